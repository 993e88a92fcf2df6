"""`pprl demo`: the whole flow on synthetic partners, end to end."""

from __future__ import annotations

import signal
from pathlib import Path

import typer
from rich.table import Table

from service.cli._app import app, err, fail, out
from service.results import overlap_rows, show


@app.command()
def demo(
    directory: Path = typer.Option(
        Path(".pprl-demo"), "--dir", help="Demo data (replaced each run)."
    ),
    people: int = typer.Option(20_000, "--people", help="Size of the synthetic population."),
    port: int = typer.Option(8443, "--port", help="HTTPS port (another is chosen if busy)."),
    serve: bool = typer.Option(
        True, "--serve/--no-serve", help="Keep the service running at the end."
    ),
) -> None:
    """Run the whole flow on synthetic partners: hash, submit, link, release, audit."""
    from service.demo import run_demo

    try:
        result = run_demo(directory, people=people, port=port, say=lambda m: err.print(m, highlight=False),
                          keep_serving=serve)  # fmt: skip
    except RuntimeError as exc:
        fail(str(exc))
    released, truth = result.released, result.truth
    policy = released["policy"]
    for cohort, title in (("persons", "Everyone"),
                          ("frequent", f"Frequent users (>= {released['frequent_threshold']} contacts)")):  # fmt: skip
        table = Table("", "released", "truth (demo only)", title=title, title_justify="left")
        for label, value in overlap_rows(released, cohort):
            key = _figure_for(label, cohort, released["partners"])
            table.add_row(label, show(value), show(truth.get(key)) if key else "")
        out.print(table)
    mechanism = ("differential privacy" if policy.get("dp")
                 else "cell key perturbation (ONS method)")  # fmt: skip
    out.print(f"disclosure: {mechanism}, then counts below {policy['suppress_below']} suppressed, "
              f"others rounded to {policy['round_to']}; * = suppressed (primary or secondary)")  # fmt: skip
    out.print(f"UpSet chart: {result.chart}")
    out.print(f"audit chain: {result.audit_summary}")
    out.print(f"finished in {result.seconds:.0f} s")
    if result.server is None:
        return
    out.print(f"\nDPO pages: {result.url}/dpo   (sign in with the DPO token below)\n"
              f"DPO token: {result.dpo_token}\nAnalyst token: {result.tokens['analyst']}\n"
              f"CA certificate: {directory / 'tls' / 'ca.pem'}\nPress Ctrl-C to stop.")  # fmt: skip
    try:
        signal.pause()
    except KeyboardInterrupt:
        pass
    finally:
        result.server.terminate()
        result.server.wait(timeout=30)


def _figure_for(label: str, cohort: str, partners: list[str]) -> str | None:
    if label == "distinct people":
        return f"{cohort}.total"
    if label.startswith("known to both "):
        a, b = label[len("known to both ") :].split(" and ")
        return f"{cohort}.both.{'+'.join(sorted((a, b)))}"
    if label.startswith("known to >= "):
        return f"{cohort}.at_least_{label.split()[3]}"
    if label.startswith("known to "):
        return f"{cohort}.partner.{label[len('known to ') :]}"
    return None
