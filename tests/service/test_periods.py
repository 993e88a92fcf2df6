"""Period labels: each scheme's form, any short label without one, and the default."""

from __future__ import annotations

import pytest

from service.crypto.envelope import Envelope
from service.submissions.periods import PeriodError, check_period, label, period_key


@pytest.mark.parametrize(
    ("scheme", "good", "bad"),
    [
        ("quarterly", ["2026-Q1", "1999-Q4"], ["2026-Q5", "2026Q1", "26-Q1", "2026-q1", "2026-Q1\n"]),
        ("monthly", ["2026-01", "2026-12"], ["2026-13", "2026-1", "2026-00", "2026-01\n"]),
        ("yearly", ["2026"], ["26", "2026-Q1", "2026\n"]),
        (None, ["2026-Q1", "wave_3", "a.b-c"], ["-x", "two words", "x" * 21, "é", "wave_3\n"]),
    ],
)
def test_labels_follow_the_projects_scheme(
    scheme: str | None, good: list[str], bad: list[str]
) -> None:
    for value in good:
        assert check_period(value, scheme) == value
    for value in bad:
        with pytest.raises(PeriodError, match=r"^period '") as caught:
            check_period(value, scheme)
        assert "\n" not in str(caught.value)


def test_no_period_is_the_projects_one_period() -> None:
    assert check_period(None, "quarterly") is None and check_period("", None) is None
    assert label(None) == "all submissions" and label("2026-Q1") == "2026-Q1"
    assert sorted(["2026-Q2", None, "2025-Q4"], key=period_key) == [None, "2025-Q4", "2026-Q2"]


def test_an_envelope_from_an_older_client_has_no_period() -> None:
    fields = {"project_id": "p", "spec_fingerprint": "s", "key_check_value": "k",
              "policy_fingerprint": "f", "rows": 1, "rows_rejected": 0, "tool_version": "t",
              "enclave_key_fingerprint": "a" * 64, "sealed_bytes": 1, "sealed_sha256": "b" * 64,
              "payload_sha256": "c" * 64, "format": "pprl-envelope/1"}  # fmt: skip
    import json

    old = Envelope.from_json(json.dumps(fields))
    assert old.period == ""
    new = Envelope.from_json(json.dumps({**fields, "period": "2026-Q1"}))
    assert new.period == "2026-Q1" and Envelope.from_header(new.to_header()) == new
