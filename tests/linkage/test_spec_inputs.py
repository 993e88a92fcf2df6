"""Spec keys for partners' inputs: per-identifier date `formats` and column `aliases`
(part of the fingerprint when set; absent ones leave existing fingerprints alone)."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from linkage.errors import SpecError
from linkage.spec import fingerprint, parse_spec
from tests.conftest import EXAMPLE_SPEC


def _data() -> dict[str, Any]:
    return json.loads(Path(EXAMPLE_SPEC).read_text())


def _with_dob(**extra: Any) -> dict[str, Any]:
    data = _data()
    for ident in data["identifiers"]:
        if ident["name"] == "dob":
            ident.update(extra)
    return data


def test_unset_keys_stay_out_of_the_canonical_form() -> None:
    spec = parse_spec(_data())
    canonical = json.loads(spec.canonical_json())
    assert all("formats" not in i and "aliases" not in i for i in canonical["identifiers"])


def test_formats_and_aliases_change_the_fingerprint() -> None:
    plain = fingerprint(parse_spec(_data()))
    us = fingerprint(parse_spec(_with_dob(formats=["%m/%d/%Y"])))
    uk = fingerprint(parse_spec(_with_dob(formats=["%d/%m/%Y"])))
    aliased = fingerprint(parse_spec(_with_dob(aliases=["DOB"])))
    assert len({plain, us, uk, aliased}) == 4


@pytest.mark.parametrize(
    ("extra", "message"),
    [
        ({"formats": []}, "formats must list at least one strptime format"),
        ({"formats": ["%d/%m"]}, "needs a day (%d), a month (%m) and a year"),
        ({"formats": ["%d/%m/%Y %H:%M"]}, "use only %d, %m, %Y, %y, %b and %B"),
    ],
)
def test_bad_formats_are_refused_naming_the_path(extra: dict[str, Any], message: str) -> None:
    with pytest.raises(SpecError) as caught:
        parse_spec(_with_dob(**extra))
    assert "identifiers[3].formats" in str(caught.value) and message in str(caught.value)


def test_formats_only_on_dates() -> None:
    data = _data()
    data["identifiers"][0]["formats"] = ["%d/%m/%Y"]
    with pytest.raises(SpecError, match="'formats' applies only to date identifiers"):
        parse_spec(data)
