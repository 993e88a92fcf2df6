"""`pprl demo`'s flow, non-interactively: the released figures match the ground truth
within the disclosure rounding (plus the linkage's own small error)."""

from __future__ import annotations

from pathlib import Path

from service.demo import run_demo


def test_demo_flow_releases_figures_close_to_the_truth(tmp_path: Path) -> None:
    result = run_demo(
        tmp_path / "demo", people=3000, port=0, say=lambda _m: None, keep_serving=False
    )
    released, truth = result.released["figures"], result.truth
    policy = result.released["policy"]
    checked = 0
    for name, value in released.items():
        if value is None or name.endswith("mean_contacts") or ".by." in name:
            continue
        if name not in truth:  # ranges (.low/.high) and the quality pack have no truth
            continue
        exact = truth[name]
        # rounding moves a figure by at most half the base, the perturbation by at most its
        # stated maximum; linkage error by ~2% (a few people on small cells)
        noise = policy.get("cell_key", {}).get("max_perturbation", 0)
        assert abs(value - exact) <= policy["round_to"] / 2 + noise + max(4, 0.02 * exact), (
            name,
            value,
            exact,
        )
        checked += 1
    assert checked >= 20
    assert released["persons.total"] is not None
    assert result.audit_ok, result.audit_summary
    assert result.chart.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    # nothing left in the worker's scratch space
    assert not list((tmp_path / "demo" / "data" / "work").glob("run-*"))
