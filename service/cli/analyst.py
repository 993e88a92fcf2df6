"""`pprl run` and `pprl results`: what an analyst uses (through the API)."""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any

import typer
from rich.table import Table

from service.cli._app import JsonOption, api_client, app, emit, err, fail, out, progress
from service.results_view import csv_text, overlap_rows, plot_results, show


@app.command()
def run(
    project: str = typer.Option(..., "--project", help="Project name or id."),
    wait: bool = typer.Option(False, "--wait", help="Wait for the run, with a progress bar."),
    frequent_threshold: int | None = typer.Option(
        None, "--frequent-threshold", help="Contacts that make a frequent user."
    ),
    as_json: bool = JsonOption,
) -> None:
    """Queue a linkage run of the project's current submissions (analyst token)."""
    body = {"frequent_threshold": frequent_threshold} if frequent_threshold else {}
    with api_client() as client:
        state = client.request("POST", f"/v1/projects/{project}/runs", json=body)
        if wait:
            state = wait_for_run(client, project, state["id"])
    if state["status"] == "failed":
        fail(f"run {state['id']} failed: {state['message']}")
    emit(state, as_json, lambda: out.print(f"run {state['id']}: {state['status']}"))


def wait_for_run(client: Any, project: str, run_id: str, timeout: float = 3600) -> dict[str, Any]:
    """Poll a run until it is done or failed, drawing its progress."""
    deadline = time.monotonic() + timeout
    with progress("%") as bar:
        task = bar.add_task("queued", total=100)
        while True:
            state: dict[str, Any] = client.request("GET", f"/v1/projects/{project}/runs/{run_id}")
            bar.update(
                task,
                completed=round(state["progress"] * 100),
                description=state["stage"] or state["status"],
            )
            if state["status"] in ("done", "failed"):
                return state
            if time.monotonic() > deadline:
                fail(f"run {run_id} still {state['status']} after {timeout:.0f} s")
            time.sleep(0.5)


def latest_done_run(client: Any, project: str) -> str:
    runs = client.request("GET", f"/v1/projects/{project}/runs")
    done = [r for r in runs if r["status"] == "done"]
    if not done:
        fail(
            f"project {project} has no finished run yet (start one with `pprl run --project {project} --wait`)"
        )
    return str(done[-1]["id"])


def render_results(released: dict[str, Any]) -> None:
    """The overlap tables and cohort breakdowns, as an analyst reads them."""
    policy = released["policy"]
    out.print(f"[bold]Released results[/] of run {released['run_id']} "
              f"(disclosure: {policy['style']}, suppress < {policy['suppress_below']}, "
              f"round to {policy['round_to']}; * = suppressed)")  # fmt: skip
    for cohort, title in (
        ("persons", "Everyone"),
        ("frequent", f"Frequent users (>= {released['frequent_threshold']} contacts)"),
    ):
        table = Table("", "people", title=title, title_justify="left")
        for label, value in overlap_rows(released, cohort):
            table.add_row(label, show(value))
        out.print(table)
    f = released["figures"]
    for attr in released["attributes"]:
        table = Table(attr, "everyone", "mean contacts", "known to >= 2", "frequent users",
                      title=f"by {attr}", title_justify="left")  # fmt: skip
        values = sorted({n.split(".")[3] for n in f if n.startswith(f"persons.by.{attr}.")},
                        key=lambda v: (v == "unknown", v))  # fmt: skip
        for v in values:
            base = f"by.{attr}.{v}"
            table.add_row(v, show(f.get(f"persons.{base}.count")), show(f.get(f"persons.{base}.mean_contacts")),
                          show(f.get(f"multi.{base}.count")), show(f.get(f"frequent.{base}.count")))  # fmt: skip
        out.print(table)


@app.command()
def results(
    project: str = typer.Option(..., "--project", help="Project name or id."),
    run_id: str | None = typer.Option(None, "--run", help="Run id (default: the latest finished)."),
    fmt: str = typer.Option("table", "--format", help="table, json or csv."),
    plot: Path | None = typer.Option(
        None, "--plot", help="Write the UpSet chart and heatmap PNG here."
    ),
    as_json: bool = JsonOption,
) -> None:
    """Show a run's released figures (analyst token); optionally draw the charts."""
    if fmt not in ("table", "json", "csv"):
        fail(f"--format {fmt!r}: choose table, json or csv")
    with api_client() as client:
        rid = run_id or latest_done_run(client, project)
        released = client.request("GET", f"/v1/projects/{project}/runs/{rid}/results")
    if plot is not None:
        plot_results(released, plot)
        err.print(f"wrote {plot}")
    if as_json or fmt == "json":
        emit(released, True)
    elif fmt == "csv":
        out.print(csv_text(released), end="")
    else:
        render_results(released)
