"""The disclosure policy as part of the agreement: its floor, its fingerprint, its changes.

Partners' envelopes carry the fingerprint of the policy they agreed to
(:func:`linkage.spec.policy_fingerprint`); the API refuses an upload naming another, and
the enclave refuses to release under a policy its partners' sealed agreements do not
name. So a change of policy is an audited admin action after which every partner must
re-acknowledge (resubmit under the new fingerprint) before its data counts again.
"""

from __future__ import annotations

from typing import Any

from sqlalchemy.orm import Session

from linkage.spec import DisclosurePolicy, policy_fingerprint
from service.audit import Actor, record
from service.db.models import Project
from service.errors import BadRequest

__all__ = ["FLOOR_ROUND_TO", "FLOOR_SUPPRESS_BELOW", "check_floor", "parse_policy", "set_policy"]

#: the weakest policy accepted without differential privacy (ONS/NHS practice: small
#: numbers under 5 suppressed, everything else rounded to 5)
FLOOR_SUPPRESS_BELOW = 5
FLOOR_ROUND_TO = 5


def check_floor(policy: DisclosurePolicy, where: str = "disclosure") -> None:
    """Refuse a policy weaker than suppress-below 5 and round-to 5 unless DP is on."""
    if policy.dp is not None:
        return
    if policy.suppress_below < FLOOR_SUPPRESS_BELOW:
        raise BadRequest(
            f"{where}.suppress_below: {policy.suppress_below} is below the floor of "
            f"{FLOOR_SUPPRESS_BELOW} (allowed only with differential privacy on)"
        )
    if policy.round_to < FLOOR_ROUND_TO:
        raise BadRequest(
            f"{where}.round_to: {policy.round_to} is below the floor of {FLOOR_ROUND_TO} "
            "(allowed only with differential privacy on)"
        )


def parse_policy(data: dict[str, Any], where: str = "disclosure") -> DisclosurePolicy:
    """Validate a policy body and its floor; one sentence naming the field on error."""
    try:
        policy = DisclosurePolicy.model_validate(data)
    except ValueError as exc:
        err = exc.errors()[0]  # type: ignore[attr-defined]
        loc = ".".join(str(p) for p in err.get("loc", ()))
        raise BadRequest(f"{where}{'.' + loc if loc else ''}: {err['msg']}") from None
    check_floor(policy, where)
    return policy


def set_policy(
    session: Session, project: Project, data: dict[str, Any], *, by: Actor
) -> DisclosurePolicy:
    """Replace the project's disclosure policy (admin), audited with both fingerprints."""
    old = DisclosurePolicy.model_validate_json(project.disclosure_json)
    new = parse_policy(data)
    if policy_fingerprint(new) == policy_fingerprint(old):
        return old
    project.disclosure_json = new.model_dump_json()
    record(
        session,
        actor=by,
        action="project.policy_changed",
        project_id=project.id,
        subject=project.name,
        details={
            "from": policy_fingerprint(old),
            "to": policy_fingerprint(new),
            "disclosure": new.model_dump(mode="json"),
        },
    )
    return new
