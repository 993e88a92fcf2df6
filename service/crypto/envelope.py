"""The sealed upload format: a clear envelope beside a sealed, self-describing payload.

A partner's upload is one HTTP request::

    POST /v1/projects/{id}/submissions
    Content-Type: application/vnd.pprl.sealed
    X-PPRL-Envelope: base64url(canonical JSON of the envelope)
    body: the sealed payload (see ``service.crypto.sealing``)

The **payload** is sealed to the enclave's public key on the partner's machine. Its
plaintext is ``PPRLSUB2 | u32 length | agreement JSON | u32 length | footer copy |
hashed Parquet``: the *agreement* (project, spec, key check value, disclosure-policy
fingerprint, rows) is inside the seal, so the enclave reads what the partner agreed to
from the partner's own bytes, not from the operator's database. The *footer copy* is
the Parquet file's last bytes (its metadata, length and magic), sent first so that the
enclave can decode and check each row group while the rest is still arriving
(``service.worker.streaming``); the enclave checks the copy against the real footer
before it believes anything it read through it. ``PPRLSUB1`` frames (no footer copy:
older clients, the browser page, extracts rewritten on the fly) are still accepted and
checked once complete.

The **envelope** repeats the agreement in the clear and adds what the API needs to refuse
early and to verify the stored bytes: the enclave key fingerprint it was sealed to, the
sealed payload's size and SHA-256, and the SHA-256 of the Parquet inside (the enclave
checks it; the API uses it to spot a resubmitted identical extract). Nothing in it is
record-level.

The sealed payload's SHA-256 is known only once the whole payload is sealed. So that a
client can seal and send at once, instead of sealing the whole file before the first
byte leaves, its envelope may say ``"sealed_sha256": "follows"`` (:data:`DIGEST_FOLLOWS`):
the body is then the sealed payload followed by its 32-byte SHA-256
(:data:`DIGEST_TRAILER_BYTES`), and the API checks the one against the other exactly as
it checks a digest given in the header. The Parquet's own SHA-256 may follow as well
(``"payload_sha256": "follows"``, only beside a sealed digest that follows): it comes
32 bytes after the sealed one, so a client need not read the file once before it sends
it. ``pprl submit`` sends both after the body for extracts it sends as they are; the API
records the completed envelope, so nothing after it sees the difference (an identical
resubmission is then spotted once the body is in, not before).

This module imports only the standard library (and the sealing module): the partner's
client uses it without the server stack.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import json
import re
import struct
from dataclasses import MISSING, asdict, dataclass, fields, replace
from typing import Any

from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric.x25519 import X25519PublicKey

__all__ = [
    "AGREEMENT_FORMAT",
    "DIGEST_FOLLOWS",
    "DIGEST_TRAILER_BYTES",
    "ENVELOPE_FORMAT",
    "ENVELOPE_HEADER",
    "FRAME_MAGIC",
    "FRAME_MAGIC_V2",
    "SEALED_MEDIA_TYPE",
    "SIDECAR_SUFFIX",
    "Agreement",
    "Envelope",
    "EnvelopeError",
    "Frame",
    "format_fingerprint",
    "frame_prefix",
    "key_fingerprint",
    "normalise_fingerprint",
    "parquet_tail",
    "read_frame_head",
    "split_frame",
]

ENVELOPE_HEADER = "X-PPRL-Envelope"
#: an upload's envelope waits beside its partial body in ``incoming/`` under this suffix
#: (``<name>.envelope`` beside ``<name>.part``) while the body arrives
SIDECAR_SUFFIX = ".envelope"
SEALED_MEDIA_TYPE = "application/vnd.pprl.sealed"
ENVELOPE_FORMAT = "pprl-envelope/1"
AGREEMENT_FORMAT = "pprl-agreement/1"
FRAME_MAGIC = b"PPRLSUB1"
FRAME_MAGIC_V2 = b"PPRLSUB2"  # with the Parquet footer copied ahead of the file
_MAX_AGREEMENT = 16 << 10
_MAX_TAIL = 16 << 20  # a footer copy larger than this is refused (real ones are KBs)
_MAX_HEADER = 8 << 10
_HEX64 = re.compile(r"^[0-9a-f]{64}$")
#: ``sealed_sha256`` (and ``payload_sha256``) of an envelope whose digest is sent after
#: the sealed body
DIGEST_FOLLOWS = "follows"
DIGEST_TRAILER_BYTES = 32  # a raw SHA-256


class EnvelopeError(ValueError):
    """An envelope or a payload frame is malformed; the message names the field."""


def key_fingerprint(key: X25519PublicKey | bytes) -> str:
    """SHA-256 of the raw 32-byte public key, as 64 lower-case hex digits."""
    raw = (
        key
        if isinstance(key, bytes)
        else key.public_bytes(serialization.Encoding.Raw, serialization.PublicFormat.Raw)
    )
    return hashlib.sha256(raw).hexdigest()


def format_fingerprint(fingerprint: str) -> str:
    """Hex in groups of four (``3f2a 91c0 ...``), for reading aloud and comparing by eye."""
    return " ".join(fingerprint[i : i + 4] for i in range(0, len(fingerprint), 4))


def normalise_fingerprint(text: str) -> str:
    """Accept a fingerprint with spaces, colons or upper case; return 64 hex digits."""
    value = re.sub(r"[\s:]", "", text).lower().removeprefix("sha256")
    if not _HEX64.fullmatch(value):
        raise EnvelopeError(
            "an enclave fingerprint is 64 hex digits (spaces and colons allowed); "
            f"got {len(value)} characters"
        )
    return value


@dataclass(frozen=True)
class Agreement:
    """What the partner agreed to for this extract; sealed inside the payload."""

    project_id: str
    spec_fingerprint: str
    key_check_value: str
    policy_fingerprint: str
    rows: int
    rows_rejected: int
    tool_version: str
    format: str = AGREEMENT_FORMAT

    def to_json(self) -> bytes:
        return json.dumps(asdict(self), sort_keys=True, separators=(",", ":")).encode()

    @classmethod
    def from_json(cls, raw: bytes) -> Agreement:
        data = _object(raw, "the sealed agreement")
        if data.get("format") != AGREEMENT_FORMAT:
            raise EnvelopeError(f"the sealed agreement is not {AGREEMENT_FORMAT!r}")
        return cls(**_fields(cls, data, "the sealed agreement"))


@dataclass(frozen=True)
class Envelope:
    """The clear envelope: the agreement plus what lets the API check the stored bytes."""

    project_id: str
    spec_fingerprint: str
    key_check_value: str
    policy_fingerprint: str
    rows: int
    rows_rejected: int
    tool_version: str
    enclave_key_fingerprint: str
    sealed_bytes: int
    sealed_sha256: str
    payload_sha256: str
    format: str = ENVELOPE_FORMAT
    #: the period the extract covers (e.g. 2026-Q1; "" = the project's one period): a
    #: clear, non-sensitive label the API files the submission under
    period: str = ""

    def agreement(self) -> Agreement:
        """The agreement this envelope claims is sealed inside the payload."""
        return Agreement(
            project_id=self.project_id,
            spec_fingerprint=self.spec_fingerprint,
            key_check_value=self.key_check_value,
            policy_fingerprint=self.policy_fingerprint,
            rows=self.rows,
            rows_rejected=self.rows_rejected,
            tool_version=self.tool_version,
        )

    @property
    def digest_follows(self) -> bool:
        """The sealed payload's SHA-256 is sent after it, the first 32 bytes after it."""
        return self.sealed_sha256 == DIGEST_FOLLOWS

    @property
    def payload_digest_follows(self) -> bool:
        """The Parquet's SHA-256 is sent after the sealed one (the body's last 32 bytes)."""
        return self.payload_sha256 == DIGEST_FOLLOWS

    @property
    def trailer_bytes(self) -> int:
        """The digests sent after the sealed payload: 0, 32 or 64 bytes."""
        return DIGEST_TRAILER_BYTES * (self.digest_follows + self.payload_digest_follows)

    @property
    def body_bytes(self) -> int:
        """The request body's length: the sealed payload, and the digests that follow."""
        return self.sealed_bytes + self.trailer_bytes

    def completed(self, trailer: bytes) -> Envelope:
        """This envelope with the digests that followed the body (``trailer``, exactly
        :attr:`trailer_bytes` long) filled in."""
        if len(trailer) != self.trailer_bytes:
            raise EnvelopeError("the digests after the body are incomplete")
        sealed, payload = self.sealed_sha256, self.payload_sha256
        if self.digest_follows:
            sealed, trailer = trailer[:DIGEST_TRAILER_BYTES].hex(), trailer[DIGEST_TRAILER_BYTES:]
        if self.payload_digest_follows:
            payload = trailer.hex()
        return replace(self, sealed_sha256=sealed, payload_sha256=payload)

    def to_json(self) -> str:
        return json.dumps(asdict(self), sort_keys=True, separators=(",", ":"))

    def to_header(self) -> str:
        """The value of the ``X-PPRL-Envelope`` header."""
        return base64.urlsafe_b64encode(self.to_json().encode()).decode().rstrip("=")

    @classmethod
    def from_json(cls, raw: str | bytes) -> Envelope:
        data = _object(raw, "the envelope")
        if data.get("format") != ENVELOPE_FORMAT:
            raise EnvelopeError(
                f"the envelope's format is not {ENVELOPE_FORMAT!r}: upgrade the pprl client"
            )
        values = _fields(cls, data, "the envelope")
        for name in ("sealed_sha256", "payload_sha256", "enclave_key_fingerprint"):
            if name != "enclave_key_fingerprint" and values[name] == DIGEST_FOLLOWS:
                continue
            if not _HEX64.fullmatch(values[name]):
                also = f' (nor "{DIGEST_FOLLOWS}")' if name != "enclave_key_fingerprint" else ""
                raise EnvelopeError(f"the envelope's {name} is not 64 hex digits{also}")
        if values["payload_sha256"] == DIGEST_FOLLOWS != values["sealed_sha256"]:
            raise EnvelopeError(
                f'the envelope\'s payload_sha256 may be "{DIGEST_FOLLOWS}" only when its '
                "sealed_sha256 follows too"
            )
        for name in ("rows", "rows_rejected", "sealed_bytes"):
            if values[name] < 0:
                raise EnvelopeError(f"the envelope's {name} is negative")
        return cls(**values)

    @classmethod
    def from_header(cls, value: str | None) -> Envelope:
        """Parse the ``X-PPRL-Envelope`` header (raises :class:`EnvelopeError`)."""
        if not value:
            raise EnvelopeError(
                f"the {ENVELOPE_HEADER} header is missing: upload with `pprl submit`, "
                "which seals the extract to the enclave and sends its envelope"
            )
        if len(value) > _MAX_HEADER:
            raise EnvelopeError(f"the {ENVELOPE_HEADER} header is longer than {_MAX_HEADER} bytes")
        try:
            raw = base64.urlsafe_b64decode(value + "=" * (-len(value) % 4))
        except (binascii.Error, ValueError):
            raise EnvelopeError(f"the {ENVELOPE_HEADER} header is not base64url") from None
        return cls.from_json(raw)


def _object(raw: str | bytes, what: str) -> dict[str, Any]:
    try:
        data = json.loads(raw)
    except (ValueError, UnicodeDecodeError):
        raise EnvelopeError(f"{what} is not valid JSON") from None
    if not isinstance(data, dict):
        raise EnvelopeError(f"{what} is not a JSON object")
    return data


def _fields(cls: type, data: dict[str, Any], what: str) -> dict[str, Any]:
    values: dict[str, Any] = {}
    for f in fields(cls):
        if f.name not in data and f.default is not MISSING and f.name != "format":
            continue  # optional (added later, e.g. period): older clients omit it
        if f.name not in data:
            raise EnvelopeError(f"{what} has no {f.name!r}")
        value = data[f.name]
        if f.type in ("int", int):
            if not isinstance(value, int) or isinstance(value, bool):
                raise EnvelopeError(f"{what}: {f.name!r} must be an integer")
        elif not isinstance(value, str):
            raise EnvelopeError(f"{what}: {f.name!r} must be text")
        elif len(value) > 200:
            raise EnvelopeError(f"{what}: {f.name!r} is longer than 200 characters")
        values[f.name] = value
    return values


def frame_prefix(agreement: Agreement, tail: bytes | None = None) -> bytes:
    """The bytes sealed before the Parquet: magic, length, agreement JSON, and (``tail``
    given: a ``PPRLSUB2`` frame) length and copy of the Parquet file's footer."""
    body = agreement.to_json()
    if tail is None:
        return FRAME_MAGIC + struct.pack(">I", len(body)) + body
    return (
        FRAME_MAGIC_V2 + struct.pack(">I", len(body)) + body + struct.pack(">I", len(tail)) + tail
    )


def parquet_tail(last: bytes) -> int:
    """How many bytes a Parquet file's footer copy takes, from the file's last 8 bytes
    (u32 little-endian metadata length, ``PAR1``): the metadata plus those 8."""
    if len(last) != 8 or last[4:] != b"PAR1":
        raise EnvelopeError("the extract is not a Parquet file (no PAR1 at its end)")
    return int.from_bytes(last[:4], "little") + 8


@dataclass(frozen=True)
class Frame:
    """A payload's frame: the agreement, the footer copy (None in a ``PPRLSUB1`` frame)
    and where the Parquet starts in the plaintext."""

    agreement: Agreement
    tail: bytes | None
    parquet_offset: int


def read_frame_head(plaintext: bytes | memoryview) -> Frame | None:
    """Parse the frame at the start of ``plaintext``, which may be only the first part of
    the payload; None while more bytes are needed (raises :class:`EnvelopeError`)."""
    view = memoryview(plaintext)
    head = len(FRAME_MAGIC) + 4
    if len(view) < head:
        return None
    magic = bytes(view[: len(FRAME_MAGIC)])
    if magic not in (FRAME_MAGIC, FRAME_MAGIC_V2):
        raise EnvelopeError("the sealed payload does not start with a pprl agreement")
    (length,) = struct.unpack(">I", view[len(FRAME_MAGIC) : head])
    if length > _MAX_AGREEMENT:
        raise EnvelopeError("the sealed payload's agreement is truncated or too long")
    if len(view) < head + length + (4 if magic == FRAME_MAGIC_V2 else 0):
        return None
    agreement = Agreement.from_json(bytes(view[head : head + length]))
    offset = head + length
    if magic == FRAME_MAGIC:
        return Frame(agreement, None, offset)
    (tail_length,) = struct.unpack(">I", view[offset : offset + 4])
    if not 12 <= tail_length <= _MAX_TAIL:
        raise EnvelopeError("the sealed payload's footer copy is truncated or too long")
    offset += 4
    if len(view) < offset + tail_length:
        return None
    return Frame(agreement, bytes(view[offset : offset + tail_length]), offset + tail_length)


def split_frame(plaintext: bytes | memoryview) -> tuple[Agreement, memoryview]:
    """Split a whole opened payload into its agreement and the Parquet bytes (no copy).

    A footer copy must equal the Parquet's own last bytes (anything the enclave checked
    through the copy holds for the file only then)."""
    view = memoryview(plaintext)
    frame = read_frame_head(view)
    if frame is None:
        raise EnvelopeError("the sealed payload's agreement is truncated or too long")
    parquet = view[frame.parquet_offset :]
    if frame.tail is not None and (
        len(frame.tail) > len(parquet)
        or bytes(parquet[len(parquet) - len(frame.tail) :]) != frame.tail
    ):
        raise EnvelopeError("the sealed payload's footer copy differs from the extract's footer")
    return frame.agreement, parquet
