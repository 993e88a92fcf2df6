"""The linkage spec: validation errors name their path; the fingerprint is stable."""

import copy
import json
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from linkage.errors import SpecError
from linkage.spec import default_blocking_rules, fingerprint, load_spec, parse_spec
from tests.conftest import EXAMPLE_SPEC

BASE: dict[str, Any] = json.loads(EXAMPLE_SPEC.read_text())


def mutated(change: Callable[[dict[str, Any]], None]) -> dict[str, Any]:
    data = copy.deepcopy(BASE)
    change(data)
    return data


@pytest.mark.parametrize(
    ("change", "message"),
    [
        (
            lambda d: d["identifiers"][2].update(type="postcde"),
            r"identifiers\[2\]\.type: unknown type 'postcde'",
        ),
        (
            lambda d: d["attributes"][0].update(source="dobb"),
            r"attributes\[0\]\.source: no identifier named 'dobb'",
        ),
        (
            lambda d: d["identifiers"].append({"name": "forename", "type": "forename"}),
            r"identifiers\[6\]\.name: duplicate name 'forename'",
        ),
        (lambda d: d["matching"].update(threshold=2), r"matching\.threshold: "),
        (
            lambda d: d["matching"].update(blocking=[["surname.nope"]]),
            r"matching\.blocking\[0\]\[0\]: 'surname' has no variant 'nope'",
        ),
        (lambda d: d.update(identifiers=[]), r"^identifiers: "),
        (lambda d: d.update(colour="blue"), r"colour: unknown key"),
        (lambda d: d["encoding"].update(token_bits=12), r"encoding\.token_bits: "),
        (lambda d: d["disclosure"].update(style="magic"), r"disclosure\.style: "),
        (
            lambda d: d["attributes"][3].update(values=[]),
            r"attributes\[3\]: a category attribute needs 'values'",
        ),
        (
            lambda d: d["identifiers"][0].update(name="NHS number!"),
            r"identifiers\[0\]\.name: invalid name",
        ),
        (lambda d: d.pop("reference_date"), r"reference_date: required but missing"),
    ],
)
def test_errors_name_the_path(change: Callable[[dict[str, Any]], None], message: str) -> None:
    with pytest.raises(SpecError, match=message):
        parse_spec(mutated(change))


@pytest.mark.parametrize("raw", ["{", "[]", "1e999", "null", '"spec"'])
def test_not_a_json_object(raw: str) -> None:
    with pytest.raises(SpecError):
        parse_spec(raw)


def test_load_names_the_file(tmp_path: Path) -> None:
    path = tmp_path / "bad.json"
    path.write_text(json.dumps(mutated(lambda d: d["identifiers"][2].update(type="postcde"))))
    with pytest.raises(SpecError, match=r"bad\.json: identifiers\[2\]\.type"):
        load_spec(path)
    with pytest.raises(SpecError, match="not found"):
        load_spec(tmp_path / "missing.json")


def test_fingerprint_is_stable_and_canonical() -> None:
    a = parse_spec(BASE)
    reordered = json.loads(json.dumps(BASE, sort_keys=True))
    assert fingerprint(a) == fingerprint(parse_spec(reordered))
    assert fingerprint(a).startswith("sha256:") and len(fingerprint(a)) == 7 + 64
    changed = parse_spec(mutated(lambda d: d["matching"].update(threshold=0.8)))
    assert fingerprint(changed) != fingerprint(a)


def test_any_subset_of_identifier_types() -> None:
    spec = parse_spec({
        "version": "1", "name": "us", "reference_date": "2026-01-01",
        "identifiers": [{"name": "zip", "type": "postcode"}, {"name": "ssn", "type": "id"},
                        {"name": "full_name", "type": "string"}],
    })  # fmt: skip
    assert [i.type for i in spec.identifiers] == ["postcode", "id", "string"]
    assert default_blocking_rules(spec)  # something sensible even without UK types


def test_default_blocking_rules_for_the_uk_spec() -> None:
    rules = default_blocking_rules(parse_spec(BASE))
    assert ("nhs_number.exact",) in rules
    assert all(len(rule) >= 1 for rule in rules)
