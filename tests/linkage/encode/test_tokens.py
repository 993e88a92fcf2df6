"""Token properties: deterministic, keyed, domain-separated; normalisation idempotent."""

import hashlib
import hmac
from datetime import date

from hypothesis import given, settings
from hypothesis import strategies as st

from linkage.encode.tokens import TokenMaker, domain_prefix
from linkage.normalise.dates import normalise_date
from linkage.normalise.generic import normalise_generic
from linkage.normalise.names import normalise_name
from linkage.normalise.postcodes import normalise_uk_postcode

KEY_A = bytes(32)
KEY_B = bytes([1]) * 32
text = st.text(min_size=1, max_size=40)


def test_token_is_truncated_hmac_sha256_with_domain_prefix() -> None:
    maker = TokenMaker(KEY_A, "surname", "exact", 16)
    expected = hmac.new(KEY_A, domain_prefix("surname", "exact") + b"SMITH", hashlib.sha256)
    assert maker.token("SMITH") == expected.digest()[:16]


def test_array_matches_single_tokens_and_keeps_nulls() -> None:
    maker = TokenMaker(KEY_A, "forename", "exact", 16)
    arr = maker.array(["ANN", None, "BOB"])
    assert arr.to_pylist() == [maker.token("ANN"), None, maker.token("BOB")]


@given(st.text(max_size=60))
def test_name_normalisation_is_idempotent(raw: str) -> None:
    once = normalise_name(raw)
    assert normalise_name(once) == once


@given(st.text(max_size=30))
def test_postcode_and_generic_normalisation_are_idempotent(raw: str) -> None:
    pc = normalise_uk_postcode(raw)
    assert normalise_uk_postcode(pc) == pc
    g = normalise_generic(raw)
    assert normalise_generic(g) == g


@given(st.dates(min_value=date(1900, 1, 1), max_value=date(2026, 4, 1)))
def test_date_normalisation_is_idempotent(d: date) -> None:
    ref = date(2026, 4, 1)
    for raw in (d.isoformat(), d.strftime("%d/%m/%Y"), d.strftime("%Y%m%d")):
        once = normalise_date(raw, ref)
        assert once == d.isoformat()
        assert normalise_date(once, ref) == once


@settings(max_examples=200)
@given(st.text(max_size=40), st.text(max_size=40))
def test_equal_normalised_names_give_equal_tokens(a: str, b: str) -> None:
    maker = TokenMaker(KEY_A, "surname", "exact", 16)
    na, nb = normalise_name(a), normalise_name(b)
    if na is not None and nb is not None:
        assert (maker.token(na) == maker.token(nb)) == (na == nb)


@given(st.lists(text, min_size=1, max_size=50, unique=True))
def test_two_secrets_give_disjoint_tokens(values: list[str]) -> None:
    a = TokenMaker(KEY_A, "surname", "exact", 16)
    b = TokenMaker(KEY_B, "surname", "exact", 16)
    assert not {a.token(v) for v in values} & {b.token(v) for v in values}


@given(st.lists(text, min_size=1, max_size=50, unique=True))
def test_different_fields_and_variants_never_collide(values: list[str]) -> None:
    makers = [
        TokenMaker(KEY_A, "forename", "exact", 16),
        TokenMaker(KEY_A, "surname", "exact", 16),
        TokenMaker(KEY_A, "surname", "prefix3", 16),
    ]
    sets = [{m.token(v) for v in values} for m in makers]
    assert not sets[0] & sets[1] and not sets[1] & sets[2] and not sets[0] & sets[2]


def test_field_names_cannot_be_shifted_into_values() -> None:
    # "a" + "\0b" vs "a\0" + "b": the NUL separators keep the boundary unambiguous
    assert domain_prefix("ab", "c") != domain_prefix("a", "bc")
