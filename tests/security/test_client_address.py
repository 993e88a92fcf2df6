"""The client address that rate-limits failed sign-ins (and is audited) is the
connection's own: a caller cannot choose it with X-Forwarded-For, unless the operator
names the reverse proxy that sets that header (``PPRL_TRUSTED_PROXIES``)."""

from __future__ import annotations

import ssl
from pathlib import Path

import httpx
import pytest

from tests.live_server import free_port, service_env, start_server
from tests.service_fixtures import Service


def _bad_sign_ins(service: Service, tmp_path: Path, **env: str) -> list[int]:
    """Status codes of 40 requests with bad tokens, each claiming another address."""
    from service.tlscert import make_local_tls

    tls = make_local_tls(tmp_path / "tls")
    port = free_port()
    server = start_server(service_env(service.settings, **env), tls, port, "--no-worker")
    try:
        context = ssl.create_default_context(cafile=str(tls.ca_cert))
        with httpx.Client(base_url=f"https://127.0.0.1:{port}", verify=context) as http:
            return [
                http.get("/v1/projects", headers={"Authorization": f"Bearer pprl_bad{i}",
                                                  "X-Forwarded-For": f"203.0.113.{i}"}).status_code
                for i in range(40)
            ]  # fmt: skip
    finally:
        server.terminate()
        server.wait(15)


@pytest.mark.parametrize(("trusted", "limited"), [("", True), ("127.0.0.1", False)],
                         ids=["no-proxy", "behind-a-named-proxy"])  # fmt: skip
def test_a_caller_cannot_choose_its_address(
    service: Service, tmp_path: Path, trusted: str, limited: bool
) -> None:
    codes = _bad_sign_ins(service, tmp_path, PPRL_TRUSTED_PROXIES=trusted)
    assert codes[0] == 401
    # 30 failures a minute per client: one client, whatever it claims, is held to them;
    # behind a proxy the operator named, each forwarded address is a client of its own
    assert (429 in codes) is limited, codes
