"""Every suppressed figure says why: primary (too small itself) or secondary (hidden so
that a primary cell cannot be recovered by subtraction). The reason is what readers see
as [p] / [s]; it must be right for every noise draw."""

from __future__ import annotations

from hypothesis import given, settings
from hypothesis import strategies as st

from linkage.disclose import disclose
from linkage.spec import DisclosurePolicy
from linkage.stats import Figures, Relation

EXACT = DisclosurePolicy(style="threshold", suppress_below=10, round_to=1)


@given(
    st.binary(min_size=32, max_size=32),
    st.integers(0, 3),
    st.integers(40, 500),
    st.integers(40, 500),
)
@settings(max_examples=80, deadline=None)
def test_a_small_cell_is_primary_and_its_protector_secondary(
    secret: bytes, small: int, a: int, b: int
) -> None:
    fig = Figures(counts={"t": a + b + small, "a": a, "b": b, "x": small},
                  relations=[Relation("t", ("a", "b", "x"))])  # fmt: skip
    release = disclose(fig, EXACT, cell_key_secret=secret, parameters={"f": 10})
    assert set(release.suppressed_reason) == set(release.suppressed)
    if "x" not in release.suppressed:  # the noise lifted x over the threshold: nothing to protect
        assert release.suppressed == []
        return
    assert release.suppressed_reason["x"] == "primary"
    others = [n for n in release.suppressed if n != "x"]
    assert len(others) == 1, "exactly one more cell joins the lone suppressed one"
    assert release.suppressed_reason[others[0]] == "secondary"


@given(st.dictionaries(st.sampled_from("abcdefgh"), st.integers(0, 60), min_size=1),
       st.binary(min_size=32, max_size=32))  # fmt: skip
@settings(max_examples=80, deadline=None)
def test_without_relations_every_suppression_is_primary(
    counts: dict[str, int], secret: bytes
) -> None:
    release = disclose(Figures(counts=counts), EXACT, cell_key_secret=secret)
    assert release.suppressed_reason == dict.fromkeys(release.suppressed, "primary")
