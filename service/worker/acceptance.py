"""The enclave's acceptance tag: proof, kept beside a submission, that the enclave
accepted exactly this submission and these bytes.

The operator holds the database and the storage, so ``submissions.status = 'accepted'``
alone proves nothing: anyone with the database can write it, and anyone with the
storage can put another payload sealed to the enclave's *public* key where an accepted
one was. When the validator accepts a submission the worker therefore also stores an
HMAC-SHA256 over a canonical encoding of what it accepted (submission id, project,
partner, version, the sealed payload's SHA-256, rows, policy fingerprint, period and
the verdict), under a key derived by HKDF-SHA256 from the enclave's *private* key (label
``pprl/acceptance/v1``), as ``service.worker.state`` derives its state key. Before a
run links a submission it recomputes the tag from the row and hashes the sealed blob as
it opens it: a row or a blob the enclave did not accept fails the run.
"""

from __future__ import annotations

import hashlib
import hmac
import json
from typing import TYPE_CHECKING

from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric.x25519 import X25519PrivateKey
from cryptography.hazmat.primitives.kdf.hkdf import HKDF

if TYPE_CHECKING:
    from service.db.models import Submission

__all__ = ["ACCEPTED", "acceptance_key", "acceptance_tag", "tag_holds"]

_LABEL = b"pprl/acceptance/v1"
ACCEPTED = "accepted"


def acceptance_key(key: X25519PrivateKey) -> bytes:
    """The HMAC key of acceptance tags (never the same as any other key of the enclave)."""
    return HKDF(algorithm=hashes.SHA256(), length=32, salt=None, info=_LABEL).derive(
        key.private_bytes_raw()
    )


def acceptance_tag(
    key: X25519PrivateKey,
    sub: Submission,
    *,
    rows: int | None = None,
    verdict: str = ACCEPTED,
) -> str:
    """The tag of ``sub`` as the enclave accepts it (64 hex digits); ``rows`` is the
    count the validator verified when the row does not hold it yet."""
    # a JSON array of strings and integers has one encoding: no field can bleed into
    # the next, and the label keeps a tag from ever meaning anything else
    fields = [
        "pprl-acceptance/1",
        sub.id,
        sub.project_id,
        sub.partner_id,
        int(sub.version),
        sub.sha256,
        int(sub.rows if rows is None else rows),
        sub.policy_fingerprint or "",
        sub.period or "",
        verdict,
    ]
    message = json.dumps(fields, separators=(",", ":"), ensure_ascii=True).encode()
    return hmac.new(acceptance_key(key), message, hashlib.sha256).hexdigest()


def tag_holds(key: X25519PrivateKey, sub: Submission) -> bool:
    """Whether ``sub`` carries the tag the enclave gave it on acceptance (False when it
    carries none)."""
    if sub.enclave_tag is None:
        return False
    return hmac.compare_digest(sub.enclave_tag.encode(), acceptance_tag(key, sub).encode())
