"""Opening an accepted submission for a run, inside the enclave.

The sealed agreement inside each payload names the disclosure policy its partner agreed
to. A run releases under the project's policy only if every linked submission names it:
a policy changed by the operator (or by an admin, before partners re-acknowledged it)
fails the run with a sentence naming the partner that must resubmit.

The sealed blob is hashed as it is read (the same pass that opens it), so a run can
check that it links the very bytes the enclave accepted (``service.worker.acceptance``).
"""

from __future__ import annotations

from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq
from cryptography.hazmat.primitives.asymmetric.x25519 import X25519PrivateKey

from service.crypto.envelope import EnvelopeError, split_frame
from service.crypto.sealing import SealError, open_hashed

__all__ = ["SubmissionUnusable", "open_accepted", "tampered"]


class SubmissionUnusable(Exception):
    """An accepted submission cannot be linked now; the message is safe to show."""


def tampered(partner: str, version: int) -> SubmissionUnusable:
    """A submission that is not what the enclave accepted: the row's acceptance tag does
    not hold, or the blob is not the bytes it names. The message names the partner, who
    must submit again, and nothing of the data."""
    return SubmissionUnusable(
        f"{partner}'s submission v{version} is not the one the enclave accepted (altered "
        "in the database or in storage): it must submit again"
    )


def open_accepted(
    path: Path,
    key: X25519PrivateKey,
    project_id: str,
    policy_fingerprint: str,
    partner: str,
    *,
    sealed_sha256: str | None = None,
    version: int = 0,
) -> pa.Table:
    """The extract sealed in ``path``, if its agreement fits the project and policy and,
    when ``sealed_sha256`` is given, if the file is exactly those bytes (the ones the
    enclave accepted as ``partner``'s submission ``version``)."""
    try:
        plaintext, digest = open_hashed(path, key)
    except FileNotFoundError:
        raise SubmissionUnusable(f"{partner}'s submission is missing from storage") from None
    except SealError:
        raise SubmissionUnusable(
            f"{partner}'s submission does not open with the enclave key (altered in storage)"
        ) from None
    if sealed_sha256 is not None and digest != sealed_sha256:
        # sealed to the enclave's public key, which anyone holds, but not the upload
        # the enclave judged: nothing in it is used
        raise tampered(partner, version)
    try:
        agreement, parquet = split_frame(plaintext)
    except EnvelopeError:
        raise SubmissionUnusable(
            f"{partner}'s submission carries no sealed agreement: it must submit again"
        ) from None
    if agreement.project_id != project_id:
        raise SubmissionUnusable(f"{partner}'s submission was sealed for another project")
    if agreement.policy_fingerprint != policy_fingerprint:
        raise SubmissionUnusable(
            f"{partner}'s submission was made under another disclosure policy than the one "
            "in force: it must review the policy and submit again"
        )
    try:
        return pq.read_table(pa.BufferReader(pa.py_buffer(parquet)))
    except (pa.ArrowInvalid, OSError):
        # the validator decodes the columns it checks, not every token column: a page
        # corrupt elsewhere surfaces here. Naming the partner says nothing about anyone
        # else's data, and tells the project who must submit again
        raise SubmissionUnusable(
            f"{partner}'s submission has a corrupt data page and cannot be read: it must "
            "hash and submit its extract again"
        ) from None
