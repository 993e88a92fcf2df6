"""Before a run: validate again any submission it would link that has no acceptance tag.

A run links only submissions whose acceptance tag holds (``service.worker.acceptance``).
A row marked ``accepted`` without a tag is either one accepted before tags existed or
one whose status was set by hand in the database (a rejected or never-judged upload).
The worker cannot tell the two apart, and need not: it validates the payload again, in
its validator child under the same limits as intake, before the run's child starts (a
run's child may not start children of its own). Accepted: the tag is stored, audited,
and the run goes on. Refused: the run fails naming the partner, which must submit again.

Why validate rather than refuse an untagged row: refusing would strand every
submission accepted before the upgrade, and make every partner submit again for
nothing; trusting it would link whatever the operator marked accepted. Validating gives
a hand-set status exactly the check it skipped, and an old acceptance the tag it lacks.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from cryptography.hazmat.primitives.asymmetric.x25519 import X25519PrivateKey
from sqlalchemy import update

from service.audit import Actor, record
from service.db import Database
from service.db.models import Project, Submission
from service.logs import log
from service.settings import Settings
from service.worker.acceptance import acceptance_tag
from service.worker.enclave import RunFailed, current_sources
from service.worker.intake import Verdict, for_bytes, judge_in_child, validation_job
from service.worker.opening import tampered
from service.worker.queue import Claim

__all__ = ["revalidate_untagged"]


@dataclass(frozen=True)
class _Untagged:
    submission_id: str
    partner: str
    version: int
    size: int
    sha256: str
    job: dict[str, Any]


def revalidate_untagged(
    settings: Settings, db: Database, key: X25519PrivateKey, actor: Actor, claim: Claim
) -> int:
    """Validate, and tag if accepted, each untagged submission the claimed run would
    link; returns how many it judged. Raises :class:`RunFailed` naming the partner of
    the first one the validator refuses, or whose file is not the one its row names."""
    period = claim.params.get("period")
    if claim.refused or not (period is None or isinstance(period, str)):
        return 0  # the run fails anyway, with its own message
    with db.snapshot() as session:
        project = session.get(Project, claim.project_id)
        if project is None:
            return 0
        private_hex = key.private_bytes_raw().hex()
        pending = [
            _Untagged(sub.id, name, sub.version, sub.bytes, sub.sha256,
                      validation_job(settings, private_hex, settings.data_dir / sub.blob_path,
                                     sub.envelope_json or "{}", project))
            for sub, name in current_sources(session, project.id, period)
            if sub.enclave_tag is None
        ]  # fmt: skip
    for item in pending:
        verdict = for_bytes(judge_in_child(settings, item.job, item.size), item.sha256)
        _settle(db, key, actor, claim, item, verdict)
    return len(pending)


def _settle(
    db: Database, key: X25519PrivateKey, actor: Actor, claim: Claim, item: _Untagged,
    verdict: Verdict,
) -> None:  # fmt: skip
    """Store the tag of an accepted submission, audited; or fail the run, audited."""
    with db.transaction() as session:
        sub = session.get(Submission, item.submission_id)
        if sub is None:
            return  # gone meanwhile (purged): the run will not link it
        if verdict.ok:
            tag = acceptance_tag(key, sub, rows=verdict.rows)
            stored = session.execute(
                update(Submission)
                .where(Submission.id == sub.id, Submission.status == "accepted",
                       Submission.enclave_tag.is_(None), Submission.sha256 == item.sha256)
                .values(rows=verdict.rows, enclave_tag=tag)
                .execution_options(synchronize_session=False)
            ).rowcount  # type: ignore[attr-defined]  # fmt: skip
            if not stored:
                return  # changed meanwhile: the run's own check of the tag decides
        record(session, actor=actor, action="submission.revalidated",
               outcome="accepted" if verdict.ok else "rejected",
               project_id=claim.project_id, subject=item.submission_id,
               details={"partner": item.partner, "version": item.version, "run": claim.run_id,
                        "why": "accepted without the enclave's acceptance tag",
                        **({"rows": verdict.rows, "sha256": item.sha256} if verdict.ok else
                           {"reason": verdict.reason, "message": verdict.detail}),
                        "by": "enclave"})  # fmt: skip
    log("submission validated again before a run", submission=item.submission_id,
        run=claim.run_id, verdict="accepted" if verdict.ok else "rejected",
        reason=verdict.reason)  # fmt: skip
    if verdict.reason == "altered":
        raise RunFailed(str(tampered(item.partner, item.version)))
    if not verdict.ok:
        raise RunFailed(
            f"{item.partner}'s submission v{item.version} carries no acceptance by the enclave, "
            "and the enclave's validator refuses it now: it must submit again"
        )
