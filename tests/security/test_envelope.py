"""The sealed upload format on its own: streamed sealing opens to exactly what was
written, whatever the sizes and write pattern; envelopes and frames either parse or fail
with EnvelopeError, never anything else."""

from __future__ import annotations

import base64
import io
import json
from dataclasses import asdict

import pytest
from cryptography.hazmat.primitives.asymmetric.x25519 import X25519PrivateKey
from hypothesis import given, settings
from hypothesis import strategies as st

from service.crypto.envelope import (
    Agreement,
    Envelope,
    EnvelopeError,
    format_fingerprint,
    frame_prefix,
    key_fingerprint,
    normalise_fingerprint,
    parquet_tail,
    read_frame_head,
    split_frame,
)
from service.crypto.sealing import SealError, SealWriter, open_bytes

KEY = X25519PrivateKey.generate()
AGREEMENT = Agreement(
    "p", "sha256:" + "a" * 64, "0123456789abcdef", "sha256:" + "b" * 64, 10, 0, "t"
)


def _envelope() -> Envelope:
    return Envelope(
        **{k: v for k, v in asdict(AGREEMENT).items() if k != "format"},
        enclave_key_fingerprint=key_fingerprint(KEY.public_key()),
        sealed_bytes=1,
        sealed_sha256="c" * 64,
        payload_sha256="d" * 64,
    )


@settings(max_examples=60, deadline=None, database=None)
@given(
    st.lists(st.binary(max_size=300), max_size=12),
    st.sampled_from([1, 7, 64, 256]),
)
def test_seal_writer_opens_to_what_was_written(pieces: list[bytes], chunk: int) -> None:
    sink = io.BytesIO()
    writer = SealWriter(sink, KEY.public_key(), chunk)
    for piece in pieces:
        writer.write(piece)
    writer.close()
    assert open_bytes(sink.getvalue(), KEY) == b"".join(pieces)
    blob = sink.getvalue()
    if len(blob) > 80:  # any truncation fails, never a shorter plaintext
        with pytest.raises(SealError):
            open_bytes(blob[:-1], KEY)


def test_envelope_round_trip_and_fingerprints() -> None:
    envelope = _envelope()
    assert Envelope.from_header(envelope.to_header()) == envelope
    assert envelope.agreement() == AGREEMENT
    fp = key_fingerprint(KEY.public_key())
    shown = format_fingerprint(fp)
    assert len(shown.split()) == 16 and normalise_fingerprint(shown.upper()) == fp
    assert normalise_fingerprint(":".join(shown.split())) == fp
    with pytest.raises(EnvelopeError, match="64 hex digits"):
        normalise_fingerprint("abcd")
    agreement, rest = split_frame(frame_prefix(AGREEMENT) + b"PAR1xyz")
    assert agreement == AGREEMENT and bytes(rest) == b"PAR1xyz"


json_values = st.recursive(
    st.none() | st.booleans() | st.integers() | st.text(max_size=30),
    lambda c: st.lists(c, max_size=3) | st.dictionaries(st.text(max_size=10), c, max_size=3),
    max_leaves=10,
)


@settings(max_examples=200, deadline=None, database=None)
@given(
    st.one_of(
        st.none(),
        st.text(max_size=200),
        st.binary(max_size=200).map(lambda b: base64.urlsafe_b64encode(b).decode()),
        st.dictionaries(st.sampled_from([*asdict(_envelope()), "x"]), json_values, max_size=14).map(
            lambda d: base64.urlsafe_b64encode(json.dumps(d).encode()).decode()
        ),
        st.builds(
            lambda k, v: base64.urlsafe_b64encode(
                json.dumps({**asdict(_envelope()), k: v}).encode()
            ).decode(),
            st.sampled_from(list(asdict(_envelope()))),
            json_values,
        ),
    )
)
def test_hostile_envelopes_fail_only_with_envelope_error(header: str | None) -> None:
    try:
        envelope = Envelope.from_header(header)
    except EnvelopeError as exc:
        assert 5 < len(str(exc)) < 300
    else:  # whatever parses is well typed
        assert isinstance(envelope.rows, int) and isinstance(envelope.project_id, str)
        assert len(envelope.sealed_sha256) == 64


@settings(max_examples=200, deadline=None, database=None)
@given(st.binary(max_size=400), st.sampled_from([b"", b"PPRLSUB1", b"PPRLSUB2"]))
def test_hostile_frames_fail_only_with_envelope_error(data: bytes, magic: bytes) -> None:
    data = magic + data
    try:
        agreement, _ = split_frame(data)
    except EnvelopeError:
        pass
    else:
        assert isinstance(agreement, Agreement)
    for cut in range(0, len(data), 7):  # a prefix either parses, waits or is refused
        try:
            read_frame_head(data[:cut])
        except EnvelopeError:
            pass


def test_a_footer_copy_must_be_the_extract_s_own_footer() -> None:
    """A v2 frame carries the Parquet's last bytes ahead of it (checked while streaming):
    the whole payload opens only if the copy equals the real footer."""
    parquet = b"PAR1" + bytes(range(200)) + (20).to_bytes(4, "little") + b"PAR1"
    tail = parquet[-parquet_tail(parquet[-8:]) :]
    assert len(tail) == 28
    framed = frame_prefix(AGREEMENT, tail) + parquet
    agreement, rest = split_frame(framed)
    assert agreement == AGREEMENT and bytes(rest) == parquet
    frame = read_frame_head(framed)
    assert frame is not None and frame.tail == tail and framed[frame.parquet_offset :] == parquet
    assert read_frame_head(framed[: frame.parquet_offset - 1]) is None  # still arriving
    forged = frame_prefix(AGREEMENT, tail[:-9] + b"\x01" + tail[-8:]) + parquet
    with pytest.raises(EnvelopeError, match="footer copy differs"):
        split_frame(forged)
    with pytest.raises(EnvelopeError, match="no PAR1"):
        parquet_tail(b"12345678")


@settings(max_examples=60, deadline=None, database=None)
@given(st.integers(0, 5000), st.sampled_from([1, 7, 64, 256, 1024]))
def test_the_sealed_size_is_known_before_sealing(size: int, chunk: int) -> None:
    """What `pprl submit` declares before it seals (so it can send while sealing) is
    exactly what sealing then makes, at and around every chunk boundary."""
    from service.crypto.sealing import seal_bytes, sealed_size

    assert sealed_size(size, chunk) == len(seal_bytes(b"\x01" * size, KEY.public_key(), chunk))


def test_an_envelope_may_say_its_digest_follows_the_body() -> None:
    from dataclasses import replace

    from service.crypto.envelope import DIGEST_FOLLOWS, DIGEST_TRAILER_BYTES

    follows = replace(_envelope(), sealed_sha256=DIGEST_FOLLOWS)
    parsed = Envelope.from_header(follows.to_header())
    assert parsed.digest_follows and parsed.body_bytes == 1 + DIGEST_TRAILER_BYTES
    assert not _envelope().digest_follows and _envelope().body_bytes == 1
    for bad in ("later", "", "C" * 64):
        with pytest.raises(
            EnvelopeError, match='sealed_sha256 is not 64 hex digits \\(nor "follows"\\)'
        ):
            Envelope.from_header(replace(_envelope(), sealed_sha256=bad).to_header())


def test_the_parquet_digest_may_follow_only_beside_the_sealed_one() -> None:
    """Both digests after the body: the sealed payload's first, then the Parquet's, each
    filled in from the trailer; the Parquet's alone may not follow (one rule for what
    the trailer holds)."""
    from dataclasses import replace

    from service.crypto.envelope import DIGEST_FOLLOWS

    both = replace(_envelope(), sealed_sha256=DIGEST_FOLLOWS, payload_sha256=DIGEST_FOLLOWS)
    parsed = Envelope.from_header(both.to_header())
    assert parsed.payload_digest_follows and parsed.trailer_bytes == 64
    assert parsed.body_bytes == 1 + 64
    whole = parsed.completed(bytes.fromhex("ab" * 32 + "cd" * 32))
    assert (whole.sealed_sha256, whole.payload_sha256) == ("ab" * 32, "cd" * 32)
    assert whole.trailer_bytes == 0 and whole.body_bytes == 1
    for short in (b"", bytes(32), bytes(63)):
        with pytest.raises(EnvelopeError, match="digests after the body are incomplete"):
            parsed.completed(short)
    alone = replace(_envelope(), payload_sha256=DIGEST_FOLLOWS)
    with pytest.raises(EnvelopeError, match="only when its sealed_sha256 follows too"):
        Envelope.from_header(alone.to_header())
