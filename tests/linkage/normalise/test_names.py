"""Name normalisation and derived variants on real-world edge cases."""

import pytest

from linkage.normalise.names import name_variants, nickname_root, normalise_name


@pytest.mark.parametrize(
    ("raw", "expected"),
    [
        ("O'Brien", "OBRIEN"),
        ("O’Brien", "OBRIEN"),
        ("OBRIEN", "OBRIEN"),
        ("  smith  ", "SMITH"),
        ("Dr. Zoë  Müller", "ZOE MULLER"),
        ("Mr John", "JOHN"),
        ("MRS. ANNE-MARIE", "ANNE MARIE"),
        ("Siobhán", "SIOBHAN"),
        ("Łukasz", "LUKASZ"),
        ("Strauß", "STRAUSS"),
        ("Smith-Jones", "SMITH JONES"),
        ("Smith  Jones", "SMITH JONES"),
        ("de la Cruz", "DE LA CRUZ"),
        ("McDonald", "MCDONALD"),
        ("", None),
        ("   ", None),
        ("Mr", "MR"),  # a title alone is the name itself (forename Mx, surname Lord)
        ("--", None),
        (None, None),
    ],
)
def test_normalise_name(raw: str | None, expected: str | None) -> None:
    assert normalise_name(raw) == expected


def test_hyphenated_and_double_barrelled_surnames_yield_each_part() -> None:
    for raw in ("Smith-Jones", "Smith Jones", "SMITH - JONES"):
        v = name_variants(normalise_name(raw))
        assert v["exact"] == "SMITHJONES"
        assert (v["part1"], v["part2"]) == ("SMITH", "JONES")


def test_single_part_name_has_no_second_part() -> None:
    v = name_variants("SMITH")
    assert v["part1"] == "SMITH" and v["part2"] is None


def test_variants_of_a_name() -> None:
    v = name_variants(normalise_name("Katherine"))
    assert v == {
        "exact": "KATHERINE",
        "nickname": nickname_root("KATHERINE"),
        "phonetic": "K365",
        "prefix3": "KAT",
        "initial": "K",
        "part1": "KATHERINE",
        "part2": None,
    }


def test_phonetic_code_agrees_on_spelling_variants() -> None:
    codes = {name_variants(normalise_name(n))["phonetic"] for n in ("Smith", "Smyth", "Smithe")}
    assert len(codes) == 1


@pytest.mark.parametrize(
    ("nick", "root"), [("BOB", "ROBERT"), ("BILL", "WILLIAM"), ("LIZ", "ELIZABETH")]
)
def test_nicknames_map_to_their_root(nick: str, root: str) -> None:
    assert nickname_root(nick) == root
    assert nickname_root(root) == root


def test_missing_name_gives_all_variants_missing() -> None:
    assert set(name_variants(None).values()) == {None}
