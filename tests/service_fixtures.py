"""Service fixtures: a fresh database per test on SQLite and on PostgreSQL.

The schema is built once per test session by ``alembic upgrade head`` into a template
(a file on SQLite, a template database on PostgreSQL) and every test gets its own copy.
Under CI a PostgreSQL test fails, never skips, when the server is unreachable.
"""

from __future__ import annotations

import os
import shutil
import uuid
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import psycopg
import pytest
from fastapi.testclient import TestClient

from linkage.encode import hash_file, new_secret, write_secret
from linkage.spec import load_spec
from service.app import create_app
from service.bootstrap import initialise
from service.db import migrate
from service.settings import Settings
from tests.conftest import EXAMPLE_SPEC, in_ci

PG_ADMIN = os.environ.get("PPRL_TEST_PG", "postgresql://postgres@127.0.0.1:5432/test")


def _pg_conn() -> psycopg.Connection[Any]:
    try:
        return psycopg.connect(PG_ADMIN, autocommit=True, connect_timeout=5)
    except psycopg.OperationalError as exc:
        if in_ci():
            pytest.fail(f"PostgreSQL at {PG_ADMIN} is unreachable under CI: {exc}")
        pytest.skip(f"PostgreSQL unreachable: {exc}")


def _sa_url(dbname: str) -> str:
    base = PG_ADMIN.rsplit("/", 1)[0].replace("postgresql://", "postgresql+psycopg://", 1)
    return f"{base}/{dbname}"


@pytest.fixture(scope="session")
def sqlite_template(tmp_path_factory: pytest.TempPathFactory) -> Path:
    path = tmp_path_factory.mktemp("template") / "template.db"
    migrate(f"sqlite:///{path}")
    return path


@pytest.fixture(scope="session")
def pg_template(worker_id: str) -> Iterator[str]:
    name = f"pprl_tmpl_{worker_id}_{uuid.uuid4().hex[:8]}"
    with _pg_conn() as conn:
        conn.execute(f'CREATE DATABASE "{name}"')
    migrate(_sa_url(name))
    with _pg_conn() as conn:
        conn.execute(f'ALTER DATABASE "{name}" WITH is_template = true')
    yield name
    with _pg_conn() as conn:
        conn.execute(f'ALTER DATABASE "{name}" WITH is_template = false')
        conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


@pytest.fixture(params=["sqlite", pytest.param("postgresql", marks=pytest.mark.postgres)])
def database_url(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[str]:
    """A freshly migrated database, private to this test."""
    if request.param == "sqlite":
        path = tmp_path / "pprl.db"
        shutil.copy(request.getfixturevalue("sqlite_template"), path)
        yield f"sqlite:///{path}"
        return
    template = request.getfixturevalue("pg_template")
    name = f"pprl_t_{uuid.uuid4().hex[:12]}"
    with _pg_conn() as conn:
        conn.execute(f'CREATE DATABASE "{name}" TEMPLATE "{template}"')
    yield _sa_url(name)
    with _pg_conn() as conn:
        conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


@dataclass
class Service:
    """A running app (in process) with its admin token and helpers to set up a project."""

    settings: Settings
    http: TestClient
    admin: str
    tokens: dict[str, str] = field(default_factory=dict)
    project_id: str = ""

    def as_(self, token: str | None) -> dict[str, str]:
        return {"Authorization": f"Bearer {token}"} if token else {}

    def token(self, name: str, role: str, projects: list[str] | None = None) -> str:
        r = self.http.post(
            "/v1/tokens",
            headers=self.as_(self.admin),
            json={"name": name, "role": role, "projects": projects or []},
        )
        assert r.status_code == 201, r.text
        self.tokens[name] = r.json()["token"]
        return self.tokens[name]

    def project(
        self, name: str = "frequent-users", members: list[str] | None = None, **extra: Any
    ) -> str:
        spec = load_spec(EXAMPLE_SPEC).model_dump(mode="json")
        body = {
            "name": name,
            "purpose": "test",
            "legal_basis": "6(1)(e)",
            "agreement": "DSA-1",
            "spec": spec,
            "members": members or [],
            **extra,
        }
        r = self.http.post("/v1/projects", headers=self.as_(self.admin), json=body)
        assert r.status_code == 201, r.text
        return str(r.json()["id"])

    def upload(
        self, token: str, data: bytes, project: str | None = None, **envelope: Any
    ) -> Any:
        """Seal ``data`` as `pprl submit` would and upload it; ``envelope`` overrides
        envelope fields (to test refusals). The receipt says ``received``: call
        :meth:`judge` to let the enclave validate it."""
        from tests.sealed import sealed_upload

        pid = project or self.project_id
        info = self.http.get(f"/v1/projects/{pid}", headers=self.as_(self.admin)).json()
        key = self.http.app.state.pprl.enclave_public_key  # type: ignore[attr-defined]
        headers, body = sealed_upload(data, info, key, **envelope)
        return self.http.post(
            f"/v1/projects/{pid}/submissions", headers={**self.as_(token), **headers}, content=body
        )

    def judge(self) -> int:
        """Run the enclave's intake once (validate every received submission)."""
        from service.worker.loop import Worker

        return Worker(self.settings).validate_received()

    def submit(self, token: str, data: bytes, project: str | None = None) -> Any:
        """Upload, let the enclave judge it, and return the submission as it now stands."""
        r = self.upload(token, data, project)
        assert r.status_code == 202, r.text
        self.judge()
        pid = project or self.project_id
        return self.http.get(
            f"/v1/projects/{pid}/submissions/{r.json()['id']}", headers=self.as_(token)
        ).json()

    def login_csrf(self) -> str:
        """The CSRF token of a fresh DPO sign-in form."""
        import re

        match = re.search(r'name="csrf" value="([^"]+)"', self.http.get("/dpo/login").text)
        assert match, "no CSRF field on the sign-in form"
        return match.group(1)

    def sign_in_dpo(self, token: str | None = None) -> None:
        """Sign in to the DPO pages (the session cookie stays on ``http``)."""
        r = self.http.post(
            "/dpo/login",
            data={"token": token or self.tokens["dpo"], "csrf": self.login_csrf()},
            follow_redirects=False,
        )
        assert r.status_code == 303, r.text

    def run_now(self, worker: Any = None, **params: Any) -> dict[str, Any]:
        """Ask for a run as the analyst, let ``worker`` (a fresh one by default) process
        it, and return the run as the analyst then sees it."""
        from service.worker.loop import Worker

        analyst = self.as_(self.tokens["analyst"])
        r = self.http.post(f"/v1/projects/{self.project_id}/runs", headers=analyst, json=params)
        assert r.status_code == 202, r.text
        run_id = r.json()["id"]
        assert (worker or Worker(self.settings)).run_once() == run_id
        state: dict[str, Any] = self.http.get(
            f"/v1/projects/{self.project_id}/runs/{run_id}", headers=analyst
        ).json()
        return state

    def audit_events(self, action: str) -> list[dict[str, Any]]:
        """This project's audit events of ``action``, oldest first: outcome, subject and
        details in one dict."""
        import json

        from sqlalchemy import select

        from service.db.models import AuditEvent

        state = self.http.app.state.pprl  # type: ignore[attr-defined]
        with state.db.transaction() as s:
            rows = s.execute(
                select(AuditEvent)
                .where(AuditEvent.action == action, AuditEvent.project_id == self.project_id)
                .order_by(AuditEvent.seq)
            ).scalars()
            return [
                {"outcome": e.outcome, "subject": e.subject, **json.loads(e.details)} for e in rows
            ]

    def audit_actions(self) -> list[tuple[str, str]]:
        from sqlalchemy import select

        from service.db.models import AuditEvent

        state = self.http.app.state.pprl  # type: ignore[attr-defined]
        with state.db.transaction() as s:
            return [
                (e.action, e.outcome)
                for e in s.execute(select(AuditEvent).order_by(AuditEvent.seq)).scalars()
            ]


@pytest.fixture
def settings(tmp_path: Path, database_url: str) -> Settings:
    return Settings(
        data_dir=tmp_path / "data",
        database_url=database_url,  # type: ignore[arg-type]
        worker_embedded=False,
    )


@pytest.fixture
def service(settings: Settings) -> Iterator[Service]:
    done = initialise(settings)
    app = create_app(settings)
    with TestClient(app, base_url="https://testserver") as http:
        yield Service(settings=settings, http=http, admin=done.admin_token)
    app.state.pprl.db.dispose()


@pytest.fixture
def project_service(service: Service) -> Service:
    """A project with two partners, an analyst, and a DPO (not a member: DPOs need none)."""
    service.token("housing", "partner")
    service.token("police", "partner")
    service.token("analyst", "analyst")
    service.token("dpo", "dpo")
    service.token("outsider", "partner")
    service.project_id = service.project(members=["housing", "police", "analyst"])
    return service


@pytest.fixture(scope="session")
def hashed_extracts(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    """Two partners' hashed extracts under one secret, plus one under another secret."""
    from pyarrow import csv as pacsv

    from linkage.synthetic import generate_partners

    root = tmp_path_factory.mktemp("extracts")
    spec = load_spec(EXAMPLE_SPEC)
    secret, other = root / "project.key", root / "other.key"
    write_secret(secret, new_secret())
    write_secret(other, new_secret())
    tables = generate_partners(600, seed=11)
    out: dict[str, Path] = {}
    for name in ("housing", "police"):
        source = root / f"{name}.csv"
        pacsv.write_csv(tables[name].drop(["person_id"]), source)
        out[name] = root / f"{name}.parquet"
        hash_file(spec, secret.read_bytes(), source, out[name])
        out[f"{name}.csv"] = source
    out["wrong_secret"] = root / "wrong.parquet"
    hash_file(spec, other.read_bytes(), out["housing.csv"], out["wrong_secret"])
    out["secret"] = secret
    return out
