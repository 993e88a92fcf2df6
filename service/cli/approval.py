"""`pprl results approve|refuse`: an output checker's decision on a held release.

A project with output checking holds every release (status ``awaiting_approval``) until
a DPO or the project's named output checker approves it; the analyst sees nothing
before. Both decisions are audited with their reason.
"""

from __future__ import annotations

from typing import Any

from service.cli._app import api_client, emit, fail, out

__all__ = ["DECISIONS", "decide"]

DECISIONS = {"approve": "approve", "refuse": "refuse"}


def decide(project: str, run_id: str | None, action: str, reason: str, as_json: bool) -> None:
    """Approve or refuse the held release of ``run_id`` (DPO or output checker token)."""
    decision = DECISIONS.get(action)
    if decision is None:
        fail(f"results {action!r}: use `pprl results approve` or `pprl results refuse`")
    if run_id is None:
        fail(f"results {action}: name the held run with --run (see `pprl runs list`)")
    with api_client() as client:
        state: dict[str, Any] = client.request(
            "POST",
            f"/v1/projects/{project}/runs/{run_id}/approval",
            json={"decision": decision, "reason": reason},
        )
    emit(state, as_json, lambda: out.print(f"run {state['id']}: {state['status']}"))
