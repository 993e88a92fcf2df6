"""The API process stays light: it stores sealed bytes it cannot open, so receiving an
upload, serving the partner kit and the home page load no data-frame, chart or linkage
engine (pyarrow, pandas, matplotlib, DuckDB, Splink), and neither does the `pprl` command
line that `pprl serve` runs in (its hash, check and submit commands import theirs). Those belong to the partner's
machine and the enclave worker; the pages that draw charts or build workbooks import
theirs when they do. This is what keeps the API's memory near 80 MB instead of 270 MB.

Checked in a fresh interpreter (the test process itself has imported everything).
"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

from tests.live_server import service_env
from tests.service_fixtures import Service

HEAVY = ("pyarrow", "pandas", "numpy", "matplotlib", "duckdb", "splink", "scipy", "openpyxl")

_API = """
import json, sys
from pathlib import Path
from starlette.testclient import TestClient
import service.cli  # `pprl serve` runs the app inside the command line's process
from service.app import create_app

project, partner, headers, body = sys.argv[1], sys.argv[2], json.loads(sys.argv[3]), sys.argv[4]
auth = {"Authorization": f"Bearer {partner}"}


def peak_rss_mb():
    # VmHWM, not ru_maxrss: Linux carries ru_maxrss over from the parent across exec
    status = Path("/proc/self/status").read_text()
    return int(status.split("VmHWM:")[1].split()[0]) / 1024


with TestClient(create_app(), base_url="https://testserver") as http:
    statuses = [
        http.get("/healthz").status_code,
        http.get(f"/v1/projects/{project}/kit", headers=auth).status_code,
        http.post(f"/v1/projects/{project}/submissions", headers={**auth, **headers},
                  content=Path(body).read_bytes()).status_code,
    ]
heavy = json.loads(sys.argv[5])
print(json.dumps({"statuses": statuses, "loaded": [m for m in heavy if m in sys.modules],
                  "peak_rss_mb": peak_rss_mb()}))
"""


def test_the_api_receives_a_sealed_upload_without_loading_data_libraries(
    project_service: Service, hashed_extracts: dict[str, Path], tmp_path: Path
) -> None:
    from tests.sealed import sealed_upload

    s = project_service
    info = s.http.get(f"/v1/projects/{s.project_id}", headers=s.as_(s.admin)).json()
    key = s.http.app.state.pprl.enclave_public_key  # type: ignore[attr-defined]
    headers, body = sealed_upload(hashed_extracts["housing"].read_bytes(), info, key)
    sealed = tmp_path / "upload.sealed"
    sealed.write_bytes(body)
    done = subprocess.run(
        [sys.executable, "-c", _API, s.project_id, s.tokens["housing"], json.dumps(headers),
         str(sealed), json.dumps(HEAVY)],
        env=service_env(s.settings), capture_output=True, text=True, timeout=120, check=False,
    )  # fmt: skip
    assert done.returncode == 0, done.stderr
    result = json.loads(done.stdout)
    assert result["statuses"] == [200, 200, 202], result
    assert result["loaded"] == [], f"the API process imported {result['loaded']}"
    # fastapi + SQLAlchemy + cryptography + the test client: about 80 MB here; the data
    # libraries alone would add more than 100 MB
    assert result["peak_rss_mb"] < 150, result


_VALIDATOR = """
import json, sys
from service.worker.validator import judge
verdict = judge(json.loads(sys.stdin.read()))
print(json.dumps({"verdict": verdict, "pandas": "pandas" in sys.modules}))
"""


def test_the_enclave_validator_does_not_load_pandas(
    hashed_extracts: dict[str, Path], tmp_path: Path
) -> None:
    """Each submission is judged in a fresh child; pyarrow loads pandas (about 0.5 s and
    60 MB) on some calls (pa.array of a numpy array, pa.scalar, pa.table), so the
    validator avoids them."""
    from cryptography.hazmat.primitives.asymmetric.x25519 import X25519PrivateKey

    from linkage.encode import read_manifest
    from linkage.spec import fingerprint, load_spec
    from service.cli.sealed_extract import seal_extract
    from tests.conftest import EXAMPLE_SPEC

    key = X25519PrivateKey.generate()
    extract = hashed_extracts["housing"]
    sealed = seal_extract(extract, tmp_path / "x.sealed", key.public_key(), "p", "policy")
    job = {
        "private_key": key.private_bytes_raw().hex(),
        "path": str(sealed.path),
        "envelope": sealed.envelope.to_json(),
        "project": {"project_id": "p", "spec_fingerprint": fingerprint(load_spec(EXAMPLE_SPEC)),
                    "spec_json": Path(EXAMPLE_SPEC).read_text(), "policy_fingerprint": "policy",
                    "key_check_value": read_manifest(extract).key_check_value},
        "max_identity_share": 0.0, "max_identity_floor": 5,  # the repeat check runs
    }  # fmt: skip
    done = subprocess.run([sys.executable, "-c", _VALIDATOR], input=json.dumps(job),
                          capture_output=True, text=True, timeout=120, check=False)  # fmt: skip
    assert done.returncode == 0, done.stderr
    result = json.loads(done.stdout)
    assert result["verdict"]["ok"], result
    assert not result["pandas"]
