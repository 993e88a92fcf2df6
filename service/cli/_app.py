"""The shared Typer application and the conventions every `pprl` command follows.

- progress bars and messages go to stderr (``err``), results to stdout (``out``);
- every command that prints a result takes ``--json`` and then prints ONE JSON object;
- every error is one clear sentence on stderr and a non-zero exit code (see ``fail``).
"""

from __future__ import annotations

import json
import sys
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import Any, NoReturn

import typer
from rich.console import Console
from rich.progress import (
    BarColumn,
    MofNCompleteColumn,
    Progress,
    TextColumn,
    TimeElapsedColumn,
    TimeRemainingColumn,
)

from linkage.errors import LinkageError
from service.cli._help import plain_help

plain_help()

app = typer.Typer(
    name="pprl",
    help="Privacy-preserving record linkage for local public services.",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
)
admin_app = typer.Typer(help="Operator commands: initialise, tokens, purge.", no_args_is_help=True)
token_app = typer.Typer(help="Create, list and revoke API tokens.", no_args_is_help=True)
project_app = typer.Typer(help="Create and inspect linkage projects.", no_args_is_help=True)
audit_app = typer.Typer(help="Review, export and verify the audit log.", no_args_is_help=True)
admin_app.add_typer(token_app, name="token")


def _print_version(value: bool) -> None:
    if value:
        from importlib.metadata import PackageNotFoundError, version

        try:
            typer.echo(f"pprl {version('pprl-linkage')}")  # the distribution's name (issue 14)
        except PackageNotFoundError:  # running from a source tree that was never installed
            typer.echo("pprl (not installed)")
        raise typer.Exit()


@app.callback()
def _main(
    _version: bool = typer.Option(
        False, "--version", callback=_print_version, is_eager=True, help="Print the version and exit."
    ),
) -> None:
    """Privacy-preserving record linkage for local public services."""


app.add_typer(admin_app, name="admin")
app.add_typer(project_app, name="project")
app.add_typer(audit_app, name="audit")

out = Console(highlight=False, soft_wrap=True)
err = Console(stderr=True, highlight=False)

JsonOption = typer.Option(False, "--json", help="Print one JSON object on stdout.")


def fail(message: str, code: int = 1) -> NoReturn:
    """Print one clear sentence on stderr and exit non-zero."""
    err.print(f"[bold red]error:[/] {message}", markup=True, highlight=False)
    raise typer.Exit(code)


def emit(result: dict[str, Any], as_json: bool, render: Callable[[], None] | None = None) -> None:
    """Print a command's result: one JSON object with ``--json``, else ``render()``."""
    if as_json:
        sys.stdout.write(json.dumps(result, default=str, sort_keys=True) + "\n")
        sys.stdout.flush()
    elif render is not None:
        render()
    else:
        for key, value in result.items():
            out.print(f"{key}: {value}")


@contextmanager
def errors_as_messages() -> Iterator[None]:
    """Turn domain errors into one-sentence messages and a non-zero exit."""
    try:
        yield
    except LinkageError as exc:
        fail(str(exc))
    except KeyboardInterrupt:
        fail("interrupted; nothing was written", code=130)


def progress(total_label: str = "rows") -> Progress:
    """A rich progress bar on stderr for long steps."""
    return Progress(
        TextColumn("[bold]{task.description}"),
        BarColumn(),
        MofNCompleteColumn(),
        TextColumn(total_label),
        TimeElapsedColumn(),
        TimeRemainingColumn(),
        console=err,
        transient=False,
    )


@contextmanager
def api_client() -> Iterator[Any]:
    """A :class:`service.client.Client` from ``PPRL_URL``/``PPRL_TOKEN``/``PPRL_CA_BUNDLE``;
    any request failure becomes one sentence and a non-zero exit."""
    from service.client import Client, ClientError

    try:
        with Client() as client:
            yield client
    except ClientError as exc:
        fail(str(exc))
