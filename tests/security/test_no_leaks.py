"""Nothing record-level, no token and no secret leaves: the whole demo flow runs, then
the server's log, every released figure, the audit export and the files left behind
are searched for the partners' identifiers, the bearer tokens and the project secret."""

from __future__ import annotations

import base64
import csv
from pathlib import Path

from service.client import Client
from service.demo import run_demo
from service.settings import ClientSettings


def test_no_identifier_token_or_secret_anywhere(tmp_path: Path) -> None:
    root = tmp_path / "demo"
    result = run_demo(root, people=2000, port=0, say=lambda _m: None, keep_serving=True)
    assert result.server is not None
    try:
        dpo = Client(
            ClientSettings(
                url=result.url, token=result.dpo_token, ca_bundle=root / "tls" / "ca.pem"
            )
        )
        audit_export = dpo.text("GET", "/v1/audit/export", params={"format": "jsonl"})
        audit_page = str(dpo.request("GET", "/v1/audit", params={"limit": 1000}))
        dpo.close()
    finally:
        result.server.terminate()
        result.server.wait(timeout=30)

    needles: set[str] = set()
    for extract in (root / "partners").glob("*.csv"):
        if "rejects" in extract.name:
            continue
        with extract.open() as fh:
            for row in csv.DictReader(fh):
                for column in ("forename", "surname"):
                    if row[column] and len(row[column]) >= 5:
                        needles.add(row[column])
                for column in ("nhs_number", "postcode", "date_of_birth"):
                    if row[column] and len(row[column]) >= 6:
                        needles.add(row[column])
    assert len(needles) > 1000
    secret = (root / "partners" / "project.key").read_bytes()
    secrets = {
        secret.hex(),
        base64.b64encode(secret).decode(),
        *result.tokens.values(),
        result.admin_token,
    }

    haystacks = {
        "server log": (root / "server.log").read_text(errors="replace"),
        "released results": str(result.released),
        "audit export": audit_export,
        "audit API": audit_page,
    }
    for path in (root / "partners").glob("*.rejects.csv"):
        haystacks[path.name] = path.read_text()
    for where, text in haystacks.items():
        leaked_secret = [s for s in secrets if s in text]
        assert not leaked_secret, f"a token or the secret appears in the {where}"
        leaked = [n for n in needles if n in text]
        assert not leaked, f"identifiers appear in the {where}: {leaked[:3]}"
    # nothing record-level left behind in the service's data directory
    data = root / "data"
    for scratch in ("work", "incoming"):
        assert not list((data / scratch).glob("*")), f"{scratch} is not empty"
    assert all(p.suffix in (".sealed",) for p in (data / "submissions").rglob("*") if p.is_file())


def test_database_errors_name_the_statement_never_the_values(database_url: str) -> None:
    """A failing statement's parameters stay out of the exception (and so out of any
    log or traceback), on SQLite and PostgreSQL."""
    import pytest
    from sqlalchemy import text
    from sqlalchemy.exc import DBAPIError

    from service.db import Database

    db = Database(database_url)
    value = "SMITH-1987-07-04-SW1A1AA"
    with pytest.raises(DBAPIError) as caught, db.transaction() as session:
        session.execute(text("INSERT INTO no_such_table (name) VALUES (:name)"), {"name": value})
    assert "no_such_table" in str(caught.value)
    assert value not in str(caught.value) and value not in repr(caught.value)
    db.dispose()
