"""`pprl project ...`: create and inspect projects (through the API)."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import typer
from rich.table import Table

from linkage.spec import load_spec
from service.cli._app import (
    JsonOption,
    api_client,
    emit,
    errors_as_messages,
    fail,
    out,
    project_app,
)


def _render_project(p: dict[str, Any]) -> None:
    out.print(f"[bold]{p['name']}[/]  id {p['id']}")
    out.print(f"purpose: {p['purpose'] or '-'}\nlegal basis: {p['legal_basis'] or '-'}")
    out.print(f"agreement: {p['agreement'] or '-'}\nspec: {p['spec_fingerprint']}")
    out.print(f"key check value: {p['key_check_value'] or '(set by the first submission)'}")
    out.print(f"retention: {p['retention_days']} days;  disclosure: {p['disclosure']}")
    out.print(f"disclosure policy fingerprint: {p.get('policy_fingerprint', '-')}")
    if p.get("enclave_key_fingerprint"):
        from service.crypto.envelope import format_fingerprint

        out.print(f"enclave key fingerprint: {format_fingerprint(p['enclave_key_fingerprint'])}")
    out.print("members: " + (", ".join(f"{m['name']} ({m['role']})" for m in p["members"]) or "-"))


@project_app.command("create")
def create(
    name: str = typer.Option(..., "--name", help="Project name."),
    spec_path: Path = typer.Option(..., "--spec", help="The linkage spec (JSON)."),
    purpose: str = typer.Option("", "--purpose", help="Why the linkage is done."),
    legal_basis: str = typer.Option("", "--legal-basis", help="e.g. UK GDPR 6(1)(e)."),
    agreement: str = typer.Option("", "--agreement", help="Data-sharing agreement reference."),
    member: list[str] = typer.Option([], "--member", help="Principal name to add (repeatable)."),
    retention_days: int = typer.Option(
        365, "--retention-days", help="Keep sealed extracts N days."
    ),
    disclosure: Path | None = typer.Option(
        None, "--disclosure", help="Policy JSON overriding the spec's."
    ),
    run_rules: Path | None = typer.Option(
        None,
        "--run-rules",
        help="Run rules JSON: parameter menu, minimum extract rows, rate limits, output "
        "checking (fixed for the project's life).",
    ),
    as_json: bool = JsonOption,
) -> None:
    """Create a linkage project (admin token)."""
    with errors_as_messages():
        load_spec(spec_path)  # validate locally first: a clearer error, no round trip
    body: dict[str, Any] = {
        "name": name, "purpose": purpose, "legal_basis": legal_basis, "agreement": agreement,
        "spec": json.loads(spec_path.read_text()), "members": member,
        "retention_days": retention_days,
    }  # fmt: skip
    if disclosure is not None:
        try:
            body["disclosure"] = json.loads(disclosure.read_text())
        except (OSError, ValueError) as exc:
            fail(f"{disclosure}: not a readable JSON file ({exc})")
    if run_rules is not None:
        try:
            body["run_rules"] = json.loads(run_rules.read_text())
        except (OSError, ValueError) as exc:
            fail(f"{run_rules}: not a readable JSON file ({exc})")
    with api_client() as client:
        project = client.request("POST", "/v1/projects", json=body)
    emit(project, as_json, lambda: _render_project(project))


@project_app.command("list")
def list_projects(as_json: bool = JsonOption) -> None:
    """Projects your token can see."""
    with api_client() as client:
        projects = client.request("GET", "/v1/projects")

    def render() -> None:
        table = Table("name", "id", "members", "key check value")
        for p in projects:
            table.add_row(p["name"], p["id"], str(len(p["members"])), p["key_check_value"] or "-")
        out.print(table)

    emit({"projects": projects}, as_json, render)


@project_app.command("show")
def show(
    project: str = typer.Argument(..., help="Name or id."), as_json: bool = JsonOption
) -> None:
    """One project's description."""
    with api_client() as client:
        data = client.request("GET", f"/v1/projects/{project}")
    emit(data, as_json, lambda: _render_project(data))


@project_app.command("set-policy")
def set_policy(
    project: str = typer.Argument(..., help="Name or id."),
    disclosure: Path = typer.Option(..., "--disclosure", help="The new policy (JSON)."),
    as_json: bool = JsonOption,
) -> None:
    """Change a project's disclosure policy (admin token; audited).

    Its fingerprint changes: every partner must review the new policy and resubmit
    (`pprl submit --accept-policy FINGERPRINT`) before the enclave releases under it.
    """
    try:
        policy = json.loads(disclosure.read_text())
    except (OSError, ValueError) as exc:
        fail(f"{disclosure}: not a readable JSON file ({exc})")
    with api_client() as client:
        data = client.request("PUT", f"/v1/projects/{project}/disclosure",
                              json={"disclosure": policy})  # fmt: skip
    emit(data, as_json, lambda: _render_project(data))
