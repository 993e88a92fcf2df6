"""HTTP routes of the partner page: the page, its assets and download, and the kit."""

from __future__ import annotations

import hashlib
from functools import cache
from pathlib import Path
from typing import Any

from fastapi import APIRouter
from fastapi.responses import FileResponse, HTMLResponse, Response
from pydantic import BaseModel, Field

from linkage.encode.kit import partner_kit
from linkage.spec import policy_fingerprint
from service.api.deps import Caller, ReadSession, State, member_project
from service.crypto.envelope import format_fingerprint, key_fingerprint
from service.crypto.keys import public_key_hex
from service.errors import NotFound, error_responses
from service.projects.service import disclosure_policy, project_spec

__all__ = ["router"]

STATIC = Path(__file__).parent / "static"
_ASSETS = {"partner.js": "text/javascript", "partner-worker.js": "text/javascript",
           "partner.css": "text/css"}  # fmt: skip

router = APIRouter(tags=["partner page"])


class PartnerKit(BaseModel):
    """What the partner page needs to hash and seal for one project (nothing secret)."""

    project_id: str
    project_name: str
    kit: dict[str, Any] = Field(description="the spec resolved by linkage.encode.kit")
    policy_fingerprint: str = Field(description="the disclosure policy partners agree to")
    enclave_public_key_hex: str
    enclave_key_fingerprint_hex: str = Field(description="sha256 of the raw key, 64 hex digits")
    enclave_key_fingerprint: str = Field(description="the same in groups of four, to read aloud")


@router.get(
    "/v1/projects/{project_id}/kit",
    response_model=PartnerKit,
    responses=error_responses(401, 403, 404),
)
def project_kit(project_id: str, state: State, caller: Caller, session: ReadSession) -> PartnerKit:
    """The partner kit of a project: resolved spec, policy fingerprint, enclave key (partner)."""
    project = member_project(state, session, caller, project_id, "read the partner kit",
                             roles=("admin", "partner"))  # fmt: skip
    key = state.enclave_public_key
    fingerprint = key_fingerprint(key)
    return PartnerKit(
        project_id=project.id,
        project_name=project.name,
        kit=partner_kit(project_spec(project)),
        policy_fingerprint=policy_fingerprint(disclosure_policy(project)),
        enclave_public_key_hex=public_key_hex(key),
        enclave_key_fingerprint_hex=fingerprint,
        enclave_key_fingerprint=format_fingerprint(fingerprint),
    )


def _built(name: str) -> Path:
    path = STATIC / name
    if not path.is_file():
        raise NotFound("the partner page is not built on this server: run `make web`")
    return path


@cache
def _standalone_sha256(mtime: float) -> str:
    return hashlib.sha256(_built("partner-standalone.html").read_bytes()).hexdigest()


@router.get("/partner", response_class=HTMLResponse, include_in_schema=False)
def partner_page() -> HTMLResponse:
    """The partner page: hash and seal in the browser; only the sealed file is uploaded."""
    body = _built("partner-page.html").read_text("utf-8")
    sha = _standalone_sha256(_built("partner-standalone.html").stat().st_mtime)
    html = (
        '<!doctype html><html lang="en"><head><meta charset="utf-8">'
        '<meta name="viewport" content="width=device-width, initial-scale=1">'
        "<title>pprl: hash and seal your extract</title>"
        '<link rel="stylesheet" href="/partner/static/partner.css"></head><body>'
        f"{body}<p class=\"note\" id=\"standalone-sha\">SHA-256 of the self-contained page: "
        f'<code>{sha}</code></p><script src="/partner/static/partner.js"></script></body></html>'
    )
    return HTMLResponse(html)


@router.get("/partner/static/{name}", include_in_schema=False)
def partner_asset(name: str) -> FileResponse:
    """The page's script, worker and stylesheet (served here, never from a CDN)."""
    if name not in _ASSETS:
        raise NotFound(f"no partner page asset {name!r}")
    return FileResponse(_built(name), media_type=_ASSETS[name])


@router.get("/partner/download", include_in_schema=False)
def partner_download() -> Response:
    """The self-contained page as one file; its sha256 is in ``X-Content-SHA256``."""
    path = _built("partner-standalone.html")
    data = path.read_bytes()
    return Response(
        data,
        media_type="text/html",
        headers={
            "Content-Disposition": 'attachment; filename="pprl-partner.html"',
            "X-Content-SHA256": hashlib.sha256(data).hexdigest(),
        },
    )
