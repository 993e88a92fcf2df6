"""Encoding a batch: column contract, usable rows, invalid counts, attributes, Bloom filters."""

import pyarrow as pa
import pytest

from linkage.encode import encode_table
from linkage.encode.bloom import BloomEncoder
from linkage.errors import InputError
from linkage.spec import BloomSpec, Spec, output_schema, parse_spec
from tests.conftest import extract

ROW = {
    "nhs_number": "943 476 5919", "forename": "Robert", "surname": "O'Brien",
    "date_of_birth": "07/03/1984", "sex": "M", "postcode": "sw1a1aa",
    "contacts": "12", "service_need": "Mental Health",
}  # fmt: skip


def test_output_follows_the_schema(spec: Spec, key: bytes) -> None:
    result = encode_table(spec, key, extract([ROW]))
    assert result.table.schema == output_schema(spec)
    row = result.table.to_pylist()[0]
    assert row["row_ref"] == 1
    assert row["a_age_band"] == "35-44"
    assert row["a_area"] == "SW1A"
    assert row["a_contacts"] == 12
    assert row["a_need"] == "mental_health"
    assert all(len(row[c]) == 16 for c in row if c.startswith("t_") and row[c] is not None)


def test_variants_agree_across_spellings(spec: Spec, key: bytes) -> None:
    other = dict(ROW, forename="BOB", surname="OBRIEN", date_of_birth="1984-07-03",
                 nhs_number="9434765919", postcode="SW1A 1AA")  # fmt: skip
    a, b = encode_table(spec, key, extract([ROW, other])).table.to_pylist()
    assert a["t_forename_nickname"] == b["t_forename_nickname"]
    assert a["t_forename_exact"] != b["t_forename_exact"]
    assert a["t_surname_exact"] == b["t_surname_exact"]
    assert a["t_nhs_number_exact"] == b["t_nhs_number_exact"]
    assert a["t_postcode_full"] == b["t_postcode_full"]
    # day and month swapped: full of one is the swapped token of the other
    assert a["t_dob_full"] != b["t_dob_full"]
    assert a["t_dob_swapped"] == b["t_dob_full"]


def test_rows_without_a_usable_identifier_are_rejected_by_number(spec: Spec, key: bytes) -> None:
    rows = [ROW, {"sex": "F", "contacts": "3"}, {"nhs_number": "123", "postcode": "nowhere"}]
    result = encode_table(spec, key, extract(rows), row_offset=100)
    assert result.table.column("row_ref").to_pylist() == [101]
    assert [r for r, _ in result.rejects] == [102, 103]
    assert all("no usable identifier" in reason for _, reason in result.rejects)
    assert result.invalid_counts["nhs_number"] == 1
    assert result.invalid_counts["postcode"] == 1


def test_invalid_values_become_missing_and_are_counted(spec: Spec, key: bytes) -> None:
    bad = dict(ROW, nhs_number="9434765918", date_of_birth="31/02/1984", service_need="astrology",
               contacts="lots")  # fmt: skip
    result = encode_table(spec, key, extract([bad]))
    row = result.table.to_pylist()[0]
    assert row["t_nhs_number_exact"] is None and row["t_dob_full"] is None
    assert row["a_need"] is None and row["a_contacts"] is None and row["a_age_band"] is None
    counts = result.invalid_counts
    assert (counts["nhs_number"], counts["dob"], counts["need"], counts["contacts"]) == (1, 1, 1, 1)


def test_missing_column_is_one_clear_error(spec: Spec, key: bytes) -> None:
    table = extract([ROW]).drop(["date_of_birth"])
    with pytest.raises(
        InputError, match=r"missing column 'date_of_birth' \(for dob\).*--column dob="
    ):
        encode_table(spec, key, table)


def test_column_mapping(spec: Spec, key: bytes) -> None:
    table = extract([ROW]).rename_columns(
        ["nhs_number", "forename", "surname", "DOB", "sex", "postcode", "contacts", "service_need"]
    )
    result = encode_table(spec, key, table, column_map={"dob": "DOB"})
    assert result.table.num_rows == 1 and result.table.to_pylist()[0]["t_dob_full"] is not None
    with pytest.raises(InputError, match="no identifier or category/count attribute called 'dbo'"):
        encode_table(spec, key, table, column_map={"dbo": "DOB"})


def _bloom_spec(spec: Spec, hardening: str) -> Spec:
    data = spec.model_dump(mode="json")
    data["encoding"]["bloom"] = {"fields": ["forename", "surname"], "hardening": hardening}
    return parse_spec(data)


@pytest.mark.parametrize("hardening", ["balance", "xor_fold", "none"])
def test_bloom_filters_give_high_dice_for_similar_names(
    spec: Spec, key: bytes, hardening: str
) -> None:
    bspec = _bloom_spec(spec, hardening)
    rows = [dict(ROW, surname=s) for s in ("Thompson", "Thomson", "Okonkwo")]
    table = encode_table(bspec, key, extract(rows)).table
    filters = [int.from_bytes(b) for b in table.column("b_surname").to_pylist()]

    def dice(a: int, b: int) -> float:
        return 2 * (a & b).bit_count() / (a.bit_count() + b.bit_count())

    assert dice(filters[0], filters[1]) > 0.75
    assert dice(filters[0], filters[2]) < dice(filters[0], filters[1]) - 0.15
    if hardening == "balance":
        assert {f.bit_count() for f in filters} == {bspec.encoding.bloom.bits // 2}  # type: ignore[union-attr]


def test_bloom_filters_depend_on_the_key_and_field() -> None:
    bs = BloomSpec(fields=["surname"])
    a = BloomEncoder(bytes(32), "surname", bs).encode("SMITH")
    assert a != BloomEncoder(bytes([7]) * 32, "surname", bs).encode("SMITH")
    assert a != BloomEncoder(bytes(32), "forename", bs).encode("SMITH")


def test_empty_batch(spec: Spec, key: bytes) -> None:
    result = encode_table(spec, key, extract([]))
    assert result.table.num_rows == 0 and result.rejects == [] and result.rows_in == 0
    assert isinstance(result.table, pa.Table)


def test_surname_parts_agree_with_single_surnames(spec: Spec, key: bytes) -> None:
    rows = [dict(ROW, surname="Smith-Jones"), dict(ROW, surname="Jones")]
    a, b = encode_table(spec, key, extract(rows)).table.to_pylist()
    assert a["t_surname_part2"] == b["t_surname_exact"]
    assert a["t_surname_exact"] != b["t_surname_exact"]


def _sector_spec(spec: Spec) -> Spec:
    """The example spec with a second, sector-level area attribute."""
    data = spec.model_dump(mode="json", exclude_none=True)
    data["attributes"].append({"name": "sector", "kind": "area", "source": "postcode",
                               "level": "sector"})  # fmt: skip
    return parse_spec(data)


def test_a_sector_level_area_carries_the_postcode_sector(spec: Spec, key: bytes) -> None:
    sectors = _sector_spec(spec)
    rows = encode_table(sectors, key, extract([ROW, {**ROW, "postcode": "LS2 7EW"},
                                               {**ROW, "postcode": "not a postcode"}])).table  # fmt: skip
    assert rows.column("a_area").to_pylist() == ["SW1A", "LS2", None]
    assert rows.column("a_sector").to_pylist() == ["SW1A 1", "LS2 7", None]
    # an optional key left out keeps the fingerprint every existing spec's extracts carry
    assert "level" not in spec.canonical_json() and '"level":"sector"' in sectors.canonical_json()


def test_level_is_for_uk_postcode_areas_only(spec: Spec) -> None:
    data = spec.model_dump(mode="json", exclude_none=True)
    bad = {**data, "attributes": [*data["attributes"], {"name": "n2", "kind": "category",
                                                        "values": ["a"], "level": "sector"}]}  # fmt: skip
    with pytest.raises(Exception, match="'level' applies only to area attributes"):
        parse_spec(bad)
