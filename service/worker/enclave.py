"""Inside the enclave: open the sealed submissions, link, compute, disclose.

Record-level data exists only in this process's memory and in the run's private
temporary directory (mode 0700, removed on every exit path, and swept at start-up if a
killed worker left one). What leaves is the released JSON: disclosure-controlled
figures and aggregate model diagnostics.
"""

from __future__ import annotations

import hashlib
import os
import shutil
import tempfile
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, Literal

import pyarrow as pa
from cryptography.hazmat.primitives.asymmetric.x25519 import X25519PrivateKey
from sqlalchemy import select
from sqlalchemy.orm import Session

from linkage.disclose import disclose
from linkage.errors import DisclosureError, LinkageError
from linkage.match import link
from linkage.spec import policy_fingerprint
from linkage.stats import compute_figures
from service.auth.partners import one_per_partner, partner_label
from service.db import Database
from service.db.models import Partner, Principal, Project, Submission
from service.processes import owned_by_other_live_process
from service.projects.rules import RunRules
from service.projects.service import disclosure_policy, project_rules, project_spec
from service.settings import Settings
from service.worker.acceptance import tag_holds
from service.worker.opening import SubmissionUnusable, open_accepted, tampered
from service.worker.queue import Claim, recorded_state_version
from service.worker.spark import run_backend
from service.worker.state import (
    EnclaveState,
    StateError,
    cell_key_secret,
    load_state,
    rules_digest,
    source_key,
)

__all__ = [
    "GENERIC_FAILURE",
    "RunFailed",
    "compute_release",
    "current_sources",
    "private_workdir",
    "state_dir",
    "sweep_stale_workdirs",
]

#: the one message of every failure whose cause lies in the linked data: which error
#: it was could depend on whether one person is in the data (issue 12, attack 5)
GENERIC_FAILURE = "the linkage could not produce a release from the current submissions"

Progress = Callable[[str, float], None]
_PREFIX = "run-"


class RunFailed(Exception):
    """A run cannot complete; the message is safe to show (it names no values)."""


def sweep_stale_workdirs(settings: Settings) -> int:
    """Remove temporary directories of workers that are no longer running."""
    removed = 0
    if not settings.work_dir.is_dir():
        return 0
    for path in settings.work_dir.glob(f"{_PREFIX}*"):
        if owned_by_other_live_process(path.name):
            continue
        shutil.rmtree(path, ignore_errors=True)
        removed += 1
    return removed


@contextmanager
def private_workdir(settings: Settings, run_id: str) -> Iterator[Path]:
    """A 0700 directory for the run's spill files, removed however the run ends."""
    settings.work_dir.mkdir(parents=True, exist_ok=True, mode=0o700)
    path = Path(tempfile.mkdtemp(prefix=f"{_PREFIX}{run_id[:8]}-", suffix=f"-{os.getpid()}",
                                 dir=settings.work_dir))  # fmt: skip
    try:
        yield path
    finally:
        shutil.rmtree(path, ignore_errors=True)


def state_dir(settings: Settings) -> Path:
    """Where the enclave keeps its authenticated per-project state (worker-only)."""
    return settings.data_dir / "enclave"


def _trusted_state(
    settings: Settings, key: X25519PrivateKey, claim: Claim, db_version: int, audited: int
) -> EnclaveState:
    """The project's state at the claim's version, or RunFailed (missing, forged, rolled
    back, or a counter that disagrees with the audit log)."""
    if db_version != claim.state_version:
        raise RunFailed("another release of this project was stored meanwhile; run again")
    if audited != claim.state_version:
        raise RunFailed(
            "enclave state for this project is missing or was altered "
            f"(version {max(audited, claim.state_version)} expected)"
        )
    try:
        return load_state(state_dir(settings), key, claim.project_id, claim.state_version)
    except StateError as exc:
        raise RunFailed(str(exc)) from None


def _never_back(state: EnclaveState, offered: dict[str, tuple[int, str]]) -> dict[str, int]:
    """The version ``offered`` for each source (with its partner's name), alone; RunFailed
    if one is older than a submission of that source the enclave has released from.

    The operator holds the database: marking the newest submission purged, or dating an
    older one later, would otherwise have the enclave link an older extract, each still
    carrying its acceptance tag (which binds its version), and a release compared with
    the last would tell what changed between the two. Nothing in the service goes back
    on its own: a newer submission supersedes, a purge removes."""
    versions = {source: version for source, (version, _) in offered.items()}
    back = state.went_back(versions)
    if back:
        source, version, before = back[0]
        raise RunFailed(
            f"the submission offered for {offered[source][1]} is version {version}, older than "
            f"version {before} the enclave has released from: the project's current "
            "submissions were rolled back in storage or in the database"
        )
    return versions


def _content_digest(table: pa.Table) -> str:
    """SHA-256 of an opened extract's content (Arrow IPC stream), computed in the enclave."""
    digest = hashlib.sha256()

    class _Sink:
        closed = False

        def write(self, data: Any) -> int:
            digest.update(data)
            return len(data)

        def flush(self) -> None:
            return None

    with pa.ipc.new_stream(pa.PythonFile(_Sink(), mode="w"), table.schema) as writer:
        writer.write_table(table)
    return digest.hexdigest()


def _chosen(claim: Claim, rules: RunRules) -> tuple[float | Literal["balanced"], int]:
    """The run's parameters from the project's menu (the API refuses others; checked
    again here because the queue is in storage the operator controls)."""
    assert rules.match_thresholds and rules.frequent_thresholds
    threshold = claim.params.get("threshold", rules.match_thresholds[0])
    frequent = claim.params.get("frequent_threshold", rules.frequent_thresholds[0])
    if threshold not in rules.match_thresholds or frequent not in rules.frequent_thresholds:
        raise RunFailed("the run's parameters are not in the project's menu")
    return ("balanced" if threshold == "balanced" else float(threshold)), int(frequent)


def _in_period(period: str | None) -> list[Any]:
    """Which accepted submissions a run of ``period`` links: the current (unsuperseded)
    ones of that period (intake supersedes within a period only), or of the default
    period, as before periods, when none is named."""
    chosen = Submission.period.is_(None) if period is None else Submission.period == period
    return [Submission.superseded_at.is_(None), chosen]


def current_sources(
    session: Session, project_id: str, period: str | None
) -> list[tuple[Submission, str]]:
    """The submissions a run of ``period`` links, one per partner, with the partner's
    name, in name order."""
    rows = session.execute(
        # extracts are named by partner organisation, so two tokens of one partner
        # (a rotation, a second machine) stay one partner
        select(Submission, partner_label())
        .join(Principal, Principal.id == Submission.partner_id)
        .outerjoin(Partner, Partner.id == Principal.partner_id)
        .where(
            Submission.project_id == project_id,
            Submission.status == "accepted",  # judged by the enclave's validator
            Submission.purged_at.is_(None),
            *_in_period(period),
        )  # fmt: skip
        .order_by(partner_label())
    ).all()
    return one_per_partner((sub, name) for sub, name in rows)


def compute_release(
    settings: Settings,
    db: Database,
    key: X25519PrivateKey,
    claim: Claim,
    progress: Progress,
) -> tuple[dict[str, Any], float, EnclaveState]:
    """Link the project's current submissions; return (released JSON, epsilon, the
    enclave's next state). The caller stores that state before the release commits."""
    if claim.refused:
        raise RunFailed(claim.refused)
    period = claim.params.get("period")
    if period is not None and not isinstance(period, str):
        raise RunFailed("the run's period is not a label")
    with db.transaction() as session:
        project = session.get(Project, claim.project_id)
        if project is None:
            raise RunFailed("the project no longer exists")
        spec, policy = project_spec(project), disclosure_policy(project)
        rules, rules_json = project_rules(project), project.run_rules_json
        db_version = project.enclave_state_version
        audited = recorded_state_version(session, project.id)
        current = current_sources(session, project.id, period)
        sources = [(name, settings.data_dir / sub.blob_path, sub.sha256, sub.version,
                    tag_holds(key, sub)) for sub, name in current]  # fmt: skip
        # each version is bound by its submission's acceptance tag (checked before use)
        offered = {source_key(sub.partner_id, sub.period): (sub.version, name)
                   for sub, name in current}  # fmt: skip
    state = _trusted_state(settings, key, claim, db_version, audited)
    if state.rules_digest is not None and state.rules_digest != rules_digest(rules_json):
        raise RunFailed("the project's run rules changed after its first release")
    released_from = _never_back(state, offered)
    threshold, frequent = _chosen(claim, rules)
    if not sources:
        raise RunFailed(
            "the project has no current submissions to link"
            + (f" for period {period}" if period is not None else "")
        )
    epsilon_left = None
    if policy.dp is not None:
        # the enclave's own ledger, not the database's counter, is what it trusts
        epsilon_left = policy.dp.epsilon_budget - state.epsilon_spent
        if epsilon_left < policy.dp.epsilon_per_release - 1e-9 or (
            claim.epsilon_reserved < policy.dp.epsilon_per_release - 1e-9
        ):
            raise RunFailed(
                f"the project's privacy budget is spent ({max(epsilon_left, 0):.3g} epsilon left)"
            )

    progress("opening sealed submissions", 0.02)
    policy_fp = policy_fingerprint(policy)
    extracts = {}
    for name, path, sealed_sha256, version, accepted in sources:
        try:
            if not accepted:
                # accepted by the enclave, not merely marked so: the worker validated and
                # tagged any untagged row before this run (service.worker.revalidate), so
                # a row without a valid tag now was altered
                raise tampered(name, version)
            extracts[name] = open_accepted(path, key, claim.project_id, policy_fp, name,
                                           sealed_sha256=sealed_sha256, version=version)  # fmt: skip
        except SubmissionUnusable as exc:
            raise RunFailed(str(exc)) from None
        if extracts[name].num_rows < rules.min_extract_rows:
            # the partner's own choice, already visible to it: no one else's data in it
            raise RunFailed(
                f"the current submission of {name} has fewer rows than the project's "
                f"minimum of {rules.min_extract_rows}"
            )
    digests = sorted(_content_digest(table) for table in extracts.values())
    with private_workdir(settings, claim.run_id) as workdir:
        backend = run_backend(settings, workdir)  # memory limit, spill cap, worker's Spark
        try:
            linked = link(extracts, spec, backend=backend, threshold=threshold,
                          on_progress=lambda stage, done: progress(stage, 0.05 + 0.8 * done))  # fmt: skip
            del extracts
            progress("statistics", 0.9)
            figures = compute_figures(linked.records, spec, frequent)
            del linked.records
            release = disclose(
                figures,
                policy,
                anchors=state.anchors,
                epsilon_left=epsilon_left,
                histogram=linked.diagnostics["match_weight_histogram"],
                comparisons=linked.diagnostics["comparisons"],
                cell_key_secret=cell_key_secret(key, claim.project_id),
                # the noise is keyed by what the enclave itself saw, so neither the
                # operator (rows it can edit) nor a re-sealed copy can redraw it
                parameters={
                    "threshold": threshold,
                    "frequent_threshold": frequent,
                    **({"period": period} if period is not None else {}),
                },  # fmt: skip
                inputs=digests,
            )
        except (DisclosureError, LinkageError):
            raise RunFailed(GENERIC_FAILURE) from None
    released = {
        "run_id": claim.run_id,
        "project_id": claim.project_id,
        "released_at": datetime.now(UTC).isoformat(timespec="seconds"),
        "released_to": claim.requested_by,
        "partners": figures.partners,
        "attributes": figures.attributes,
        "frequent_threshold": frequent,
        "match_threshold": threshold,
        "period": period,  # None = the project's one period
        "policy": policy.model_dump(mode="json"),
        "figures": release.figures,
        "suppressed": release.suppressed,
        "suppressed_reason": release.suppressed_reason,  # primary or secondary, per figure
        "epsilon_spent": release.epsilon_spent,
        "guarantee": release.guarantee,  # the mechanism and its parameters, in words
        "diagnostics": {
            "comparisons": release.comparisons,  # m/u per level: withheld by disclose
            "match_weight_histogram": release.histogram,
            "submissions": len(sources),
            # no account of how the linkage went (warnings, training passes, rules kept,
            # prior, range thresholds): each is a deterministic function of the data that
            # one person can flip (issue 12: a value the target shared with another
            # partner was "too common to train on" only when the target was there)
        },
    }
    return (
        released,
        release.epsilon_spent,
        state.next(release.anchors, release.epsilon_spent, rules_digest(rules_json), released_from),
    )
