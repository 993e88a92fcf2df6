"""The enclave's validator and sector-level areas: a sector attribute holds postcode
sectors (LS2 7) and nothing finer; a district attribute still refuses sectors."""

from __future__ import annotations

import io
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from pyarrow import csv as pacsv

from linkage.encode import hash_file, new_secret
from linkage.spec import Spec, parse_spec
from service.submissions.validate import ExtractRejected, check_extract


def _sector_spec(spec: Spec) -> Spec:
    data = spec.model_dump(mode="json", exclude_none=True)
    data["attributes"].append({"name": "sector", "kind": "area", "source": "postcode",
                               "level": "sector"})  # fmt: skip
    return parse_spec(data)


def _hashed(spec: Spec, tmp_path: Path) -> Path:
    rows = [{"nhs_number": "943 476 5919", "forename": "Ann", "surname": "Lee",
             "date_of_birth": "07/03/1984", "sex": "F", "postcode": pc, "contacts": "3",
             "service_need": "housing"} for pc in ("LS2 7EW", "LS1 1AA", "LS10 2QQ")]  # fmt: skip
    source = tmp_path / "x.csv"
    pacsv.write_csv(pa.Table.from_pylist(rows), source)
    out = tmp_path / "x.parquet"
    hash_file(spec, new_secret(), source, out)
    return out


def _with_sector(path: Path, values: list[str]) -> pa.Buffer:
    table = pq.read_table(path)
    index = table.schema.get_field_index("a_sector")
    table = table.set_column(index, "a_sector", pa.array(values, pa.string()))
    buffer = io.BytesIO()
    pq.write_table(table.replace_schema_metadata(pq.read_metadata(path).metadata), buffer)
    return pa.py_buffer(buffer.getvalue())


def test_sectors_pass_and_anything_finer_is_refused(spec: Spec, tmp_path: Path) -> None:
    sectors = _sector_spec(spec)
    hashed = _hashed(sectors, tmp_path)
    assert sorted(pq.read_table(hashed).column("a_sector").to_pylist()) == [
        "LS1 1", "LS10 2", "LS2 7"]  # fmt: skip
    check_extract(hashed, sectors, None)
    with pytest.raises(ExtractRejected, match="a_sector") as caught:
        check_extract(_with_sector(hashed, ["LS2 7EW", "LS1 1", "LS10 2"]), sectors, None)
    assert "LS2 7EW" not in str(caught.value)  # messages never quote a value
    # a hostile partner's area with a trailing newline ("$" alone would let it through)
    with pytest.raises(ExtractRejected, match="a_sector"):
        check_extract(_with_sector(hashed, ["LS2 7\n", "LS1 1", "LS10 2"]), sectors, None)
