"""The enclave's own state across runs, authenticated with a key only the worker holds.

What the worker trusts from one run to the next (stability anchors, its privacy-budget
ledger, the digest of the run rules it first released under, and the newest version of
each partner's submission it has released from) lives in one file per
project and version, encrypted and authenticated with AES-256-GCM under a key derived
by HKDF-SHA256 from the enclave's *private* key (label ``pprl/enclave-state/v1``): the
public key does not suffice to write one, so nobody but the worker can forge state.

The associated data binds each file to its project and version. The version is a
counter in the database (``projects.enclave_state_version``), raised in the transaction
that stores a release, and repeated in that release's audit event (hash-chained, so the
operator cannot quietly lower it). A file that is missing, altered, from another project
or from an older version makes the run fail: a project that has released before never
silently starts over from empty anchors or a full budget.

Crash safety: the next version's file is written before the release commits and old
versions are removed only after, so a crash between the two leaves the committed
version's file in place.
"""

from __future__ import annotations

import hashlib
import json
import os
import re
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric.x25519 import X25519PrivateKey
from cryptography.hazmat.primitives.ciphers.aead import AESGCM
from cryptography.hazmat.primitives.kdf.hkdf import HKDF

__all__ = [
    "EnclaveState",
    "StateError",
    "cell_key_secret",
    "load_state",
    "prune_states",
    "rules_digest",
    "source_key",
    "state_key",
    "state_path",
    "store_state",
]

_MAGIC = b"PPRLST1\n"
_STATE_LABEL = b"pprl/enclave-state/v1"
_CELL_KEY_LABEL = b"pprl/cell-key/v1/"
_NAME = re.compile(r"^(?P<project>[0-9A-Za-z-]+)\.v(?P<version>\d+)\.state$")


class StateError(Exception):
    """The enclave's state for a project cannot be trusted; the message is safe to show."""


def _hkdf(key: X25519PrivateKey, info: bytes) -> bytes:
    return HKDF(algorithm=hashes.SHA256(), length=32, salt=None, info=info).derive(
        key.private_bytes_raw()
    )


def state_key(key: X25519PrivateKey) -> bytes:
    """The AES-256-GCM key of the enclave's state (never the same as any other key)."""
    return _hkdf(key, _STATE_LABEL)


def cell_key_secret(key: X25519PrivateKey, project_id: str) -> bytes:
    """The project's cell-key secret for the perturbation: only the enclave can derive it,
    it differs per project, and nothing needs storing."""
    return _hkdf(key, _CELL_KEY_LABEL + project_id.encode())


def rules_digest(run_rules_json: str) -> str:
    """Digest of a project's run rules, kept in its state so they cannot change later."""
    canonical = json.dumps(json.loads(run_rules_json or "{}"), sort_keys=True)
    return hashlib.sha256(canonical.encode()).hexdigest()


@dataclass
class EnclaveState:
    """Everything the worker carries from one release of a project to the next."""

    project_id: str
    version: int = 0
    releases: int = 0
    epsilon_spent: float = 0.0
    rules_digest: str | None = None
    anchors: dict[str, Any] = field(default_factory=dict)
    #: the highest submission version released from, by :func:`source_key` (partner
    #: token and period): what the database offers a later run may not go back on
    linked: dict[str, int] = field(default_factory=dict)

    def next(
        self,
        anchors: dict[str, Any],
        epsilon: float,
        digest: str,
        linked: dict[str, int] | None = None,
    ) -> EnclaveState:
        """The state after one more release (``linked``: the versions it linked)."""
        seen = dict(self.linked)
        for source, version in (linked or {}).items():
            seen[source] = max(version, seen.get(source, 0))
        return EnclaveState(
            project_id=self.project_id,
            version=self.version + 1,
            releases=self.releases + 1,
            epsilon_spent=self.epsilon_spent + epsilon,
            rules_digest=self.rules_digest or digest,
            anchors=anchors,
            linked=seen,
        )

    def went_back(self, offered: dict[str, int]) -> list[tuple[str, int, int]]:
        """Each source offered at a version older than one released from before:
        (source key, offered version, version released from)."""
        return [(source, version, self.linked[source])
                for source, version in sorted(offered.items())
                if version < self.linked.get(source, 0)]  # fmt: skip


def source_key(partner_id: str, period: str | None) -> str:
    """What :attr:`EnclaveState.linked` is kept by: a partner token's submissions to one
    period are numbered in order (versions are per token, so two tokens of one
    organisation are kept apart)."""
    return f"{partner_id}|{period or ''}"


def _aad(project_id: str, version: int) -> bytes:
    return f"pprl-enclave-state|{project_id}|{version}".encode()


def state_path(directory: Path, project_id: str, version: int) -> Path:
    return directory / f"{project_id}.v{version}.state"


def _altered(version: int) -> StateError:
    return StateError(
        f"enclave state for this project is missing or was altered (version {version} expected)"
    )


def _versions(directory: Path, project_id: str) -> list[int]:
    if not directory.is_dir():
        return []
    found = []
    for path in directory.iterdir():
        match = _NAME.fullmatch(path.name)
        if match and match["project"] == project_id:
            found.append(int(match["version"]))
    return sorted(found)


def load_state(
    directory: Path, key: X25519PrivateKey, project_id: str, version: int
) -> EnclaveState:
    """The state stored as ``version`` for the project; :class:`StateError` if it is not
    there, does not authenticate, or belongs elsewhere. Version 0 is the empty state of a
    project that has never released. A file of a later version than the database's is
    not a rollback (a release that crashed before its commit leaves one), so it is
    ignored; a lowered counter is caught against the audit log by the caller."""
    if version == 0:
        return EnclaveState(project_id=project_id)
    try:
        blob = state_path(directory, project_id, version).read_bytes()
    except FileNotFoundError:
        raise _altered(version) from None
    if not blob.startswith(_MAGIC) or len(blob) < len(_MAGIC) + 12 + 16:
        raise _altered(version)
    nonce = blob[len(_MAGIC) : len(_MAGIC) + 12]
    try:
        plain = AESGCM(state_key(key)).decrypt(
            nonce, blob[len(_MAGIC) + 12 :], _aad(project_id, version)
        )
    except InvalidTag:
        raise _altered(version) from None
    data = json.loads(plain)
    state = EnclaveState(**data)
    if state.project_id != project_id or state.version != version:  # pragma: no cover
        raise _altered(version)  # the associated data already binds both
    return state


def store_state(directory: Path, key: X25519PrivateKey, state: EnclaveState) -> Path:
    """Write ``state`` as its version's file, atomically (mode 0600 in a 0700 directory)."""
    directory.mkdir(parents=True, exist_ok=True, mode=0o700)
    nonce = os.urandom(12)
    plain = json.dumps(asdict(state), sort_keys=True).encode()
    blob = (
        _MAGIC
        + nonce
        + AESGCM(state_key(key)).encrypt(nonce, plain, _aad(state.project_id, state.version))
    )
    path = state_path(directory, state.project_id, state.version)
    tmp = path.with_name(f".{path.name}.{os.getpid()}.partial")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "wb") as fh:
        fh.write(blob)
        fh.flush()
        os.fsync(fh.fileno())
    os.replace(tmp, path)
    return path


def prune_states(directory: Path, project_id: str, keep: int) -> None:
    """Remove the project's state files of versions other than ``keep`` (after it committed)."""
    for version in _versions(directory, project_id):
        if version != keep:
            state_path(directory, project_id, version).unlink(missing_ok=True)
