"""`pprl run` and `pprl results`: what an analyst uses (through the API)."""

from __future__ import annotations

import csv
import io
import json
import sys
import time
from pathlib import Path
from typing import Any

import typer
from rich.table import Table

from service.cli._app import JsonOption, api_client, app, emit, err, fail, out, progress
from service.results import (
    ChartError,
    available_charts,
    csv_text,
    footnotes,
    plot_results,
    policy_in_words,
    result_tables,
    show,
    xlsx_bytes,
)

runs_app = typer.Typer(help="List a project's linkage runs.", no_args_is_help=True)
app.add_typer(runs_app, name="runs")


@app.command()
def run(
    project: str = typer.Option(..., "--project", help="Project name or id."),
    wait: bool = typer.Option(False, "--wait", help="Wait for the run, with a progress bar."),
    frequent_threshold: int | None = typer.Option(
        None, "--frequent-threshold", help="Contacts that make a frequent user."
    ),
    period: str | None = typer.Option(
        None,
        "--period",
        help="Link this period's submissions, e.g. 2026-Q1 (default: the project's one period).",
    ),  # fmt: skip
    as_json: bool = JsonOption,
) -> None:
    """Queue a linkage run of the project's current submissions (analyst token)."""
    body: dict[str, Any] = {"frequent_threshold": frequent_threshold} if frequent_threshold else {}
    if period:
        body["period"] = period
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
            if state["status"] in ("done", "failed", "awaiting_approval", "refused"):
                return state
            if time.monotonic() > deadline:
                fail(f"run {run_id} still {state['status']} after {timeout:.0f} s")
            time.sleep(0.5)


def latest_done_run(client: Any, project: str, period: str | None = None) -> str:
    """The newest finished run (of ``period``, when one is named)."""
    runs = client.request("GET", f"/v1/projects/{project}/runs")
    done = [r for r in runs if r["status"] == "done"]
    if period is not None:
        done = [r for r in done if r.get("period") == period]
        if not done:
            fail(f"project {project} has no finished run of period {period} (start one with "
                 f"`pprl run --project {project} --period {period} --wait`)")  # fmt: skip
    if not done:
        fail(
            f"project {project} has no finished run yet (start one with `pprl run --project {project} --wait`)"
        )
    return str(done[-1]["id"])


def _run_or_period(client: Any, project: str, ref: str) -> str:
    """``ref`` as a run id, or the newest finished run of the period it names."""
    runs = client.request("GET", f"/v1/projects/{project}/runs")
    if any(r.get("period") == ref for r in runs):
        return latest_done_run(client, project, ref)
    return ref


def render_results(released: dict[str, Any]) -> None:
    """The overlap tables and cohort breakdowns, as an analyst reads them."""
    out.print(
        f"[bold]Released results[/] of run {released['run_id']} ({released.get('released_at', '')})"
    )
    for line in policy_in_words(released["policy"]):
        out.print(f"  {line}")
    for table in result_tables(released):
        grid = Table(*table.header, title=table.title, title_justify="left")
        for label, cells in table.rows:
            grid.add_row(label, *(c.text for c in cells))
        out.print(grid)
    for note in footnotes(released):
        out.print(note)


def render_comparison(
    before: dict[str, Any], after: dict[str, Any], fmt: str, output: Path | None
) -> None:
    """The change between two releases, as a table, tidy CSV or one JSON object."""
    from service.results.compare import compare, noise_band

    band = noise_band(after.get("policy", {}))
    changes = compare(before, after)
    rows = [{"figure_group": c.group, "breakdown": c.label, "before": c.before, "after": c.after,
             "change": c.change, "within_noise": c.within_noise(band), "figure": c.figure}
            for c in changes]  # fmt: skip
    if fmt == "json":
        emit(
            {
                "before": before["run_id"],
                "after": after["run_id"],
                "before_period": before.get("period"),
                "after_period": after.get("period"),
                "noise_band": band,
                "changes": rows,
            },
            True,
        )
        return
    if fmt == "csv":
        buf = io.StringIO()
        writer = csv.DictWriter(
            buf, fieldnames=list(rows[0]) if rows else ["figure"], lineterminator="\n"
        )
        writer.writeheader()
        writer.writerows({k: ("" if v is None else v) for k, v in r.items()} for r in rows)
        if output is not None:
            output.write_text(buf.getvalue())
        else:
            out.print(buf.getvalue(), end="")
        return

    def which(r: dict[str, Any]) -> str:
        period = f"period {r['period']}, " if r.get("period") else ""
        return f"run {r['run_id'][:8]} ({period}{r.get('released_at', '')})"

    out.print(f"[bold]Change[/] from {which(before)} to {which(after)}")
    table = Table("figure", "", "before", "after", "change", title_justify="left")
    for c in changes:
        flag = " ~" if c.within_noise(band) else ""
        table.add_row(c.group, c.label, show(c.before), show(c.after),
                      (show(c.change) if c.change is not None else "*") + flag)  # fmt: skip
    out.print(table)
    out.print(f"* = suppressed in either run. ~ = a change of at most {band}, which the disclosure "
              "control alone (noise and rounding) could make.")  # fmt: skip


@runs_app.command("list")
def runs_list(
    project: str = typer.Option(..., "--project", help="Project name or id."),
    as_json: bool = JsonOption,
) -> None:
    """The project's runs, oldest first: id, status, who asked, when (analyst token)."""
    with api_client() as client:
        runs = client.request("GET", f"/v1/projects/{project}/runs")

    def render() -> None:
        table = Table("run", "period", "status", "requested by", "created", "finished", "message",
                      title=f"Runs of {project}", title_justify="left")  # fmt: skip
        for r in runs:
            table.add_row(r["id"], r.get("period") or "", r["status"], r["requested_by"],
                          str(r["created_at"])[:19], str(r["finished_at"] or "")[:19],
                          r["message"] or "")  # fmt: skip
        out.print(table)

    emit({"runs": runs}, as_json, render)


def _check_outputs(fmt: str, output: Path | None, plot: Path | None) -> None:
    """Refuse bad --format/--output/--plot before asking the server for anything."""
    if fmt not in ("table", "json", "csv", "xlsx"):
        fail(f"--format {fmt!r}: choose table, json, csv or xlsx")
    if fmt == "xlsx" and output is None and sys.stdout.isatty():
        fail("--format xlsx writes a binary workbook: give --output FILE.xlsx (or redirect stdout)")
    for flag, path in (("--output", output), ("--plot", plot)):
        if path is not None and not path.parent.is_dir():
            fail(f"{flag} {path}: the folder {path.parent} does not exist")
    if plot is not None and plot.suffix.lower() not in (".png", ".svg", ".pdf"):
        fail(f"--plot {plot}: unknown chart file extension {plot.suffix or '(none)'!r}; "
             "use .png, .svg or .pdf")  # fmt: skip


@app.command()
def results(
    action: str | None = typer.Argument(
        None, help="approve or refuse: decide a held release (DPO or output checker token)."
    ),
    reason: str = typer.Option("", "--reason", help="With approve/refuse: why (audited)."),
    project: str = typer.Option(..., "--project", help="Project name or id."),
    run_id: str | None = typer.Option(None, "--run", help="Run id (default: the latest finished)."),
    fmt: str = typer.Option("table", "--format", help="table, json, csv (tidy) or xlsx."),
    output: Path | None = typer.Option(
        None, "--output", "-o", help="Write the csv, json or xlsx here instead of stdout."
    ),
    plot: Path | None = typer.Option(
        None, "--plot", help="Write a chart here: .png, .svg or .pdf (see --chart)."
    ),
    chart_name: str = typer.Option(
        "upset-persons",
        "--chart",
        help="Which chart --plot draws, e.g. heatmap-persons, by-area-persons.",
    ),
    period: str | None = typer.Option(
        None, "--period", help="The newest finished run of this period (e.g. 2026-Q2)."
    ),
    compare_to: str | None = typer.Option(
        None,
        "--compare",
        help="Another run id, or a period (its newest finished run): show the change in every "
        "figure both released (suppressed in either: suppressed).",
    ),
    as_json: bool = JsonOption,
) -> None:
    """Show a run's released figures (analyst token); optionally draw a chart.

    `pprl results approve|refuse --project P --run R` decides a release held for output
    checking (DPO or the project's output checker)."""
    if action is not None:
        from service.cli.approval import decide

        return decide(project, run_id, action, reason, as_json)
    _check_outputs(fmt, output, plot)
    if compare_to is not None and fmt == "xlsx":
        fail("--compare prints a table, csv or json; it has no xlsx form")
    with api_client() as client:
        rid = run_id or latest_done_run(client, project, period)
        released = client.request("GET", f"/v1/projects/{project}/runs/{rid}/results")
        earlier = None
        if compare_to is not None:
            other = _run_or_period(client, project, compare_to)
            earlier = client.request("GET", f"/v1/projects/{project}/runs/{other}/results")
    if earlier is not None:
        render_comparison(earlier, released, "json" if as_json else fmt, output)
        return
    if plot is not None:
        if chart_name not in dict(available_charts(released)):
            names = ", ".join(n for n, _ in available_charts(released))
            fail(f"--chart {chart_name!r}: this release has {names}")
        try:
            plot_results(released, plot, chart_name)
        except ChartError as exc:
            fail(str(exc))
        err.print(f"wrote {plot}")
    if as_json or fmt == "json":
        if output is not None:
            output.write_text(json.dumps(released, sort_keys=True, indent=1) + "\n")
        else:
            emit(released, True)
    elif fmt in ("csv", "xlsx"):
        data = (
            csv_text(released).encode() if fmt == "csv" else xlsx_bytes(released, project=project)
        )
        if output is not None:
            output.write_bytes(data)
            err.print(f"wrote {output}")
        else:
            sys.stdout.buffer.write(data)
            sys.stdout.flush()
    else:
        render_results(released)
