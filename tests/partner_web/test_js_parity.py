"""The browser encoder (partner-web/, run here under Node) and `pprl hash` + `pprl submit`
make the same extract: a payload sealed by the page's code is accepted by the real
enclave intake and opens to exactly the table the Python path seals, so it links the same.
"""

from __future__ import annotations

import json
import shutil
import subprocess
from pathlib import Path

import pyarrow as pa
import pytest
from sqlalchemy import select

from service.crypto import load_enclave_private_key
from service.crypto.envelope import ENVELOPE_HEADER
from service.db.models import Submission
from service.worker.loop import Worker
from service.worker.opening import open_accepted
from tests.service_fixtures import Service

ROOT = Path(__file__).resolve().parents[2]
WEB = ROOT / "partner-web"
pytestmark = pytest.mark.skipif(
    shutil.which("node") is None or not (WEB / "node_modules").is_dir(),
    reason="node and partner-web/node_modules are needed (make web installs them)",
)


def _js_seal(kit: dict[str, object], secret: Path, csv: Path, out: Path) -> dict[str, object]:
    kit_file = out.with_suffix(".kit.json")
    kit_file.write_text(json.dumps(kit))
    done = subprocess.run(
        ["node", str(WEB / "cli.mjs"), str(kit_file), str(secret), str(csv), str(out)],
        capture_output=True, text=True, timeout=300, check=False,
    )  # fmt: skip
    assert done.returncode == 0, done.stderr
    return dict(json.loads(done.stdout))


def _opened(s: Service, submission_id: str, partner: str) -> pa.Table:
    state = s.http.app.state.pprl  # type: ignore[attr-defined]
    with state.db.transaction() as session:
        row = session.execute(select(Submission).where(Submission.id == submission_id)).scalar_one()
        path = s.settings.data_dir / row.blob_path
        policy = row.policy_fingerprint
    key = load_enclave_private_key(s.settings.enclave_private_key_path)
    return open_accepted(path, key, s.project_id, policy, partner)


def test_page_encoder_seals_what_the_cli_seals(
    project_service: Service, hashed_extracts: dict[str, Path], tmp_path: Path
) -> None:
    s = project_service
    housing = s.as_(s.tokens["housing"])
    kit = s.http.get(f"/v1/projects/{s.project_id}/kit", headers=housing)
    assert kit.status_code == 200, kit.text
    result = _js_seal(kit.json(), hashed_extracts["secret"], hashed_extracts["housing.csv"],
                      tmp_path / "housing.sealed")  # fmt: skip
    # the clear envelope holds fingerprints and counts only
    assert set(result["envelope"]) >= {"spec_fingerprint", "policy_fingerprint", "rows",  # type: ignore[arg-type]
                                       "sealed_sha256", "enclave_key_fingerprint"}  # fmt: skip
    r = s.http.post(
        f"/v1/projects/{s.project_id}/submissions",
        headers={**housing, ENVELOPE_HEADER: str(result["header"]),
                 "Content-Type": "application/vnd.pprl.sealed"},
        content=(tmp_path / "housing.sealed").read_bytes(),
    )  # fmt: skip
    assert r.status_code == 202, r.text
    js_id = r.json()["id"]
    s.judge()
    verdict = s.http.get(f"/v1/projects/{s.project_id}/submissions/{js_id}", headers=housing).json()
    assert verdict["status"] == "accepted", verdict

    # the same rows through pprl hash + pprl submit's sealing
    r = s.upload(s.tokens["housing"], hashed_extracts["housing"].read_bytes())
    assert r.status_code == 202, r.text
    s.judge()
    from_js = _opened(s, js_id, "housing")
    from_cli = _opened(s, r.json()["id"], "housing")
    assert from_js.num_rows == from_cli.num_rows > 100
    assert from_js.column_names == from_cli.column_names
    for name in from_cli.column_names:
        assert from_js.column(name).combine_chunks().equals(from_cli.column(name).combine_chunks()), name

    # and a run over the page-made submission (police by the CLI) releases figures
    r = s.http.post(f"/v1/projects/{s.project_id}/runs", headers=s.as_(s.tokens["analyst"]), json={})
    assert r.status_code == 202, r.text
    assert s.upload(s.tokens["police"], hashed_extracts["police"].read_bytes()).status_code == 202
    worker = Worker(s.settings)
    worker.validate_received()
    while worker.run_once() is not None:
        pass
    run = s.http.get(f"/v1/projects/{s.project_id}/runs/{r.json()['id']}",
                     headers=s.as_(s.tokens["analyst"])).json()  # fmt: skip
    assert run["status"] in ("done", "awaiting_approval"), run
