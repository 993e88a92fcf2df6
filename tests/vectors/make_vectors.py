"""Write tests/vectors/normalisation.json: the one truth both encoders are checked against.

The Python suite (tests/vectors/test_vectors.py) recomputes every vector from the code and
fails on any difference, so a change to normalisation must regenerate this file
(``.venv/bin/python -m tests.vectors.make_vectors``), and then the JavaScript tests
(partner-web/test) fail until the page's encoder does the same.
"""

from __future__ import annotations

import json
import random
import sys
from datetime import date
from pathlib import Path
from typing import Any

import pyarrow as pa

from linkage.encode.kit import partner_kit
from linkage.encode.table import Encoder, _id_variants
from linkage.normalise import (
    name_variants,
    normalise_generic,
    normalise_generic_postcode,
    normalise_name,
    normalise_nhs_number,
    normalise_sex,
    normalise_uk_postcode,
    uk_postcode_variants,
)
from linkage.normalise.dates import date_variants, read_date
from linkage.normalise.names import nickname_root
from linkage.spec import parse_spec
from linkage.synthetic import generate_partners

HERE = Path(__file__).parent
VECTORS = HERE / "normalisation.json"
TEST_KEY = bytes(range(32))
REFERENCE = date(2026, 4, 1)

NAMES = ["O'Brien", "Smith-Jones", "Dr. Zoë  Müller", "Mr Lord", "Lord", "Miss", "MISS SMITH",
         "Mx", "José", "Åsa", "Łukasz", "Straße", "Þór", "Œdipe", "van der Berg", "de'Ath",
         "  ", "", "Ann-Marie O’Neil", "Rev Dr John", "ÆLFRED", "bob", "Bobby", "Liz",
         "Mohammed", "Muhammad", "Ng", "A", "Jean–Luc", "Chloë", "Renée", "Siân", "Seán",
         "Nguyễn", "Çelik", "Øyvind", "123", "Smith2", "Sir Mx Lady", "Dame Judi Dench",
         "Lord Smith", "Miss Lord", "Lady", "Ashcraft", "Tymczak", "Pfister", "Honeyman", "Rubin", "Rupert", "Robert"]  # fmt: skip
NHS = ["943 476 5919", "9434765919", "943-476-5919", "9434765918", "0000000000", "123",
       "94347659190", "", " 401 023 2137 ", "4010232137", "401.023.2137"]  # fmt: skip
POSTCODES = ["sw1a1aa", "SW1A 1AA", "LS1 4DY", "ls14dy", "GIR 0AA", "EC1A 1BB", "M1 1AE",
             "B33 8TH", "CR2 6XH", "DN55 1PT", "W1A 0AX", "QQ1 1QQ", "LS1", "", "ls1-4dy",
             "LS99 9ZZ", "AB1 2CD"]  # fmt: skip
SEXES = ["M", "f", "Male", "FEMALE", "1", "2", "9", "0", "U", "x", "I", "not known",
         "Not  Stated", "m.", "W", "girl", "", "Q"]  # fmt: skip
GENERIC = ["ab-12 cd", "  Élan 9 ", "12345", "x", "", "A/B/C", "ÀÉÎÕÜ", "90210-1234"]
IDS = ["123-45-6789", "123456789", "ab12", "abc", "A1B2C3D4E5", "1234", "12345", "", "99 88"]
DATES = ["1970-01-15", "15/01/1970", "15.01.1970", "15-01-70", "19700115", "01/15/1970",
         "19221607", "31/02/1970", "1899-12-31", "2030-01-01", "24560", "24560.0",
         "15-Jan-1970", "January 15, 1970", "15th January 1970", "1970-01-15 00:00:00",
         "1970-01-15T00:00:00Z", "5/6/70", "05/06/2025", "13/13/1970", "", "abc", "1/1/00",
         "29/02/2000", "29/02/1900", "Feb 29 2004", "12/25/1970", "1970-1-5"]  # fmt: skip
DATE_FORMATS: list[list[str] | None] = [None, ["%m/%d/%Y"], ["%d-%b-%Y", "%Y-%m-%d"],
                                         ["%m/%d/%y"], ["%Y%m%d"]]  # fmt: skip

SPEC_GENERIC = {
    "version": "1.0", "name": "vectors-generic", "reference_date": "2026-04-01",
    "identifiers": [
        {"name": "given", "type": "forename", "aliases": ["First Name"]},
        {"name": "family", "type": "surname"},
        {"name": "born", "type": "date", "formats": ["%m/%d/%Y"]},
        {"name": "ssn", "type": "id"},
        {"name": "zip", "type": "postcode"},
        {"name": "code", "type": "string"},
        {"name": "gender", "type": "sex"},
    ],
    "attributes": [
        {"name": "age_band", "kind": "age_band", "source": "born", "bands": [0, 18, 65]},
        {"name": "area", "kind": "area", "source": "zip"},
        {"name": "visits", "kind": "count"},
    ],
}  # fmt: skip


def _random_strings(seed: int, n: int) -> list[str]:
    rng = random.Random(seed)
    alphabet = "abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789 -'’.,/éèüößæøłçñ"
    return ["".join(rng.choice(alphabet) for _ in range(rng.randint(0, 14))) for _ in range(n)]


def _cases() -> dict[str, Any]:
    names = NAMES + _random_strings(1, 300)
    fuzz_dates = [f"{random.Random(i).randint(0, 40)}/{random.Random(i + 1).randint(0, 14)}/"
                  f"{random.Random(i + 2).choice(['70', '1970', '2001', '05', '1899'])}"
                  for i in range(200)]  # fmt: skip
    dates = []
    for formats in DATE_FORMATS:
        for raw in DATES + fuzz_dates:
            parsed, status = read_date(raw, REFERENCE, tuple(formats) if formats else None)
            dates.append({"raw": raw, "formats": formats, "iso": parsed.isoformat() if parsed
                          else None, "status": status, "variants": date_variants(parsed)})  # fmt: skip
    return {
        "reference_date": REFERENCE.isoformat(),
        "names": [{"raw": r, "normalised": (n := normalise_name(r)), "variants": name_variants(n),
                   "nickname_root": nickname_root(n) if n else None} for r in names],  # fmt: skip
        "nhs_numbers": [{"raw": r, "normalised": normalise_nhs_number(r)} for r in NHS],
        "uk_postcodes": [{"raw": r, "variants": uk_postcode_variants(normalise_uk_postcode(r))}
                         for r in POSTCODES + _random_strings(2, 100)],  # fmt: skip
        "sexes": [{"raw": r, "normalised": normalise_sex(r)} for r in SEXES],
        "generic": [{"raw": r, "normalised": normalise_generic(r),
                     "postcode": normalise_generic_postcode(r)}
                    for r in GENERIC + _random_strings(3, 100)],  # fmt: skip
        "ids": [{"raw": r, "variants": _id_variants(normalise_generic(r))} for r in IDS],
        "dates": dates,
    }


def _uk_rows(n: int) -> list[dict[str, str | None]]:
    tables = generate_partners(max(n // 2, 10), seed=7)
    rows: list[dict[str, str | None]] = []
    for table in tables.values():
        rows += table.drop(["person_id"]).to_pylist()
    return rows[:n]


def _generic_rows(n: int) -> list[dict[str, str | None]]:
    rng = random.Random(11)
    firsts = ["Ann", "bob", "Zoë", "Mary-Jane", "Mr Lord", "", "José", "Liz"]
    lasts = ["Smith", "O'Neil", "García", "Lord", "van Dyke", "", "Ng"]
    rows = []
    for _ in range(n):
        rows.append({
            "First Name": rng.choice(firsts), "family": rng.choice(lasts),
            "born": rng.choice(["12/25/1970", "25/12/1970", "1/2/2001", "", "02/30/1999",
                                "1970-05-06", "24560"]),
            "ssn": rng.choice(["123-45-6789", "987654321", "", "12"]),
            "zip": rng.choice(["90210", "10001-1234", "", "SW1A 1AA"]),
            "code": rng.choice(["ab c", "", "Ü-9"]),
            "gender": rng.choice(["m", "F", "u", ""]),
            "visits": rng.choice(["3", "3.0", "", "x", "100001", "12"]),
        })  # fmt: skip
    return rows


def _encoded(spec_data: dict[str, Any], rows: list[dict[str, str | None]]) -> dict[str, Any]:
    spec = parse_spec(spec_data)
    kit = partner_kit(spec)
    encoder = Encoder(spec, TEST_KEY)
    header = list(rows[0])
    mapping = {}
    from linkage.encode.columns import resolve_columns

    mapping = resolve_columns(spec, header, "vectors")
    table = pa.table({h: pa.array([r.get(h) for r in rows], pa.string()) for h in header})
    encoder.column_map = dict(mapping)
    result = encoder.encode(table)
    out_rows = []
    for row in result.table.to_pylist():
        out_rows.append({k: (v.hex() if isinstance(v, bytes) else v) for k, v in row.items()})
    return {
        "spec": spec_data,
        "kit": kit,
        "input": rows,
        "output": out_rows,
        "rejects": [[r, reason] for r, reason in result.rejects],
    }


def build() -> dict[str, Any]:
    """Every vector, computed by the Python implementation now."""
    uk_spec = json.loads((HERE.parent.parent / "examples" / "spec-uk.json").read_text())
    return {
        "about": "pprl normalisation and token vectors; regenerate with "
                 "`.venv/bin/python -m tests.vectors.make_vectors`",
        "test_key_hex": TEST_KEY.hex(),
        "cases": _cases(),
        "tables": [_encoded(uk_spec, _uk_rows(1500)), _encoded(SPEC_GENERIC, _generic_rows(300))],
    }  # fmt: skip


def main() -> None:
    VECTORS.write_text(json.dumps(build(), indent=None, sort_keys=True, ensure_ascii=False) + "\n")
    print(f"wrote {VECTORS} ({VECTORS.stat().st_size:,} bytes)", file=sys.stderr)


if __name__ == "__main__":
    main()
