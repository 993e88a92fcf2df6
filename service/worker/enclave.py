"""Inside the enclave: open the sealed submissions, link, compute, disclose.

Record-level data exists only in this process's memory and in the run's private
temporary directory (mode 0700, removed on every exit path, and swept at start-up if a
killed worker left one). What leaves is the released JSON: disclosure-controlled
figures and aggregate model diagnostics.
"""

from __future__ import annotations

import io
import json
import os
import shutil
import tempfile
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pyarrow.parquet as pq
from cryptography.hazmat.primitives.asymmetric.x25519 import X25519PrivateKey
from sqlalchemy import select

from linkage.disclose import disclose
from linkage.errors import DisclosureError, LinkageError
from linkage.match import Backend, link
from linkage.stats import compute_figures
from service.crypto import open_bytes, open_sealed, seal_bytes
from service.db import Database
from service.db.models import Principal, Project, Submission
from service.processes import owned_by_other_live_process
from service.projects.service import disclosure_policy, project_spec
from service.settings import Settings
from service.worker.queue import Claim

__all__ = ["RunFailed", "compute_release", "private_workdir", "sweep_stale_workdirs"]

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


def _anchors_path(settings: Settings, project_id: str) -> Path:
    return settings.data_dir / "enclave" / f"{project_id}.anchors.sealed"


def _load_anchors(
    settings: Settings, key: X25519PrivateKey, project_id: str
) -> dict[str, tuple[int, int | None]]:
    path = _anchors_path(settings, project_id)
    if not path.exists():
        return {}
    data = json.loads(open_bytes(path.read_bytes(), key, path.name))
    return {k: (int(v[0]), v[1]) for k, v in data.items()}


def save_anchors(
    settings: Settings, key: X25519PrivateKey, project_id: str, anchors: dict[str, Any]
) -> None:
    """Exact values behind past releases, sealed to the enclave itself (never in the DB)."""
    path = _anchors_path(settings, project_id)
    path.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
    tmp = path.with_suffix(".partial")
    tmp.write_bytes(seal_bytes(json.dumps(anchors).encode(), key.public_key()))
    os.replace(tmp, path)


def compute_release(
    settings: Settings,
    db: Database,
    key: X25519PrivateKey,
    claim: Claim,
    progress: Progress,
) -> tuple[dict[str, Any], float, dict[str, Any]]:
    """Link the project's current submissions; return (released JSON, epsilon, anchors)."""
    with db.transaction() as session:
        project = session.get(Project, claim.project_id)
        if project is None:
            raise RunFailed("the project no longer exists")
        spec, policy = project_spec(project), disclosure_policy(project)
        epsilon_left = (policy.dp.epsilon_budget - project.epsilon_spent) if policy.dp else None
        rows = session.execute(
            select(Submission, Principal.name)
            .join(Principal, Principal.id == Submission.partner_id)
            .where(
                Submission.project_id == project.id,
                Submission.superseded_at.is_(None),
                Submission.purged_at.is_(None),
            )  # fmt: skip
            .order_by(Principal.name)
        ).all()
        sources = [(name, settings.data_dir / sub.blob_path, sub.id) for sub, name in rows]
    if not sources:
        raise RunFailed("the project has no current submissions to link")
    if (
        policy.dp is not None
        and epsilon_left is not None
        and epsilon_left < policy.dp.epsilon_per_release
    ):
        raise RunFailed(
            f"the project's privacy budget is spent ({max(epsilon_left, 0):.3g} epsilon left)"
        )

    progress("opening sealed submissions", 0.02)
    extracts = {}
    for name, path, sub_id in sources:
        try:
            buffer = io.BytesIO(b"".join(open_sealed(path, key)))
        except FileNotFoundError:
            raise RunFailed(f"submission {sub_id} is missing from storage") from None
        extracts[name] = pq.read_table(buffer)
        del buffer

    threshold = claim.params.get("threshold")
    frequent = claim.params.get("frequent_threshold")
    with private_workdir(settings, claim.run_id) as workdir:
        backend = Backend(
            kind=settings.linkage_backend, temp_dir=workdir, spark_master=settings.spark_master
        )
        try:
            linked = link(extracts, spec, backend=backend, threshold=threshold,
                          on_progress=lambda stage, done: progress(stage, 0.05 + 0.8 * done))  # fmt: skip
            del extracts
            progress("statistics", 0.9)
            figures = compute_figures(linked.records, spec, frequent)
            del linked.records
            release = disclose(figures, policy, anchors=_load_anchors(settings, key, claim.project_id),
                               epsilon_left=epsilon_left,
                               histogram=linked.diagnostics["match_weight_histogram"])  # fmt: skip
        except DisclosureError as exc:
            raise RunFailed(str(exc)) from None
        except LinkageError as exc:
            raise RunFailed(str(exc)) from None
    released = {
        "run_id": claim.run_id,
        "project_id": claim.project_id,
        "released_at": datetime.now(UTC).isoformat(timespec="seconds"),
        "released_to": claim.requested_by,
        "partners": figures.partners,
        "attributes": figures.attributes,
        "frequent_threshold": frequent or spec.statistics.frequent_threshold,
        "match_threshold": threshold or spec.matching.threshold,
        "policy": policy.model_dump(mode="json"),
        "figures": release.figures,
        "suppressed": release.suppressed,
        "epsilon_spent": release.epsilon_spent,
        "diagnostics": {
            "comparisons": linked.diagnostics["comparisons"],
            "match_weight_histogram": release.histogram,
            "submissions": len(sources),
        },
    }
    return released, release.epsilon_spent, release.anchors
