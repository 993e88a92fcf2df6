"""The partner page's throughput in headless Chromium, beside `pprl hash` on the same rows.

    .venv/bin/python benchmarks/bench_browser.py [--records 100000]

Opens the self-contained page (service/partner/static/partner-standalone.html, built by
`make web`) from disk, loads a kit, a secret and a CSV of generated records, and times
the check pass and the hash-and-seal pass (two passes over the file: the sealed
agreement states the row count up front). Prints rows/s for each, and `pprl hash`'s
rows/s on the same CSV (hashing only: sealing is `pprl submit`'s job there).
"""

from __future__ import annotations

import argparse
import hashlib
import json
import re
import shutil
import tempfile
import time
from pathlib import Path

from linkage.encode import hash_file, new_secret, write_secret
from linkage.encode.kit import partner_kit
from linkage.spec import load_spec, policy_fingerprint

ROOT = Path(__file__).resolve().parent.parent
STATIC = ROOT / "service" / "partner" / "static"
KEY_HEX = "09" + "00" * 31  # the X25519 base point: a valid key nobody holds privately here
CHROMIUM = shutil.which("chromium") or "/usr/bin/chromium"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--records", type=int, default=100_000)
    args = parser.parse_args()
    from playwright.sync_api import sync_playwright

    from benchmarks.bench_hash import make_input

    spec = load_spec(ROOT / "examples" / "spec-uk.json")
    with tempfile.TemporaryDirectory() as tmp_dir:
        tmp = Path(tmp_dir)
        csv = tmp / "extract.csv"
        make_input(csv, args.records)
        secret = tmp / "project.key"
        write_secret(secret, new_secret())
        kit = tmp / "kit.json"
        kit.write_text(json.dumps({
            "project_id": "bench", "project_name": "bench", "kit": partner_kit(spec),
            "policy_fingerprint": policy_fingerprint(spec.disclosure),
            "enclave_public_key_hex": KEY_HEX,
        }))  # fmt: skip
        page_file = tmp / "partner.html"
        shutil.copy(STATIC / "partner-standalone.html", page_file)

        t0 = time.perf_counter()
        hash_file(spec, secret.read_bytes(), csv, tmp / "hashed.parquet")
        python_seconds = time.perf_counter() - t0

        with sync_playwright() as p:
            browser = p.chromium.launch(executable_path=CHROMIUM, args=[
                "--no-sandbox", "--disable-gpu", "--disable-background-networking",
                "--disable-component-update", "--disable-sync", "--no-first-run"])  # fmt: skip
            page = browser.new_page()
            page.goto(page_file.as_uri())
            page.set_input_files("#kit-file", str(kit))
            page.fill("#pinned", hashlib.sha256(bytes.fromhex(KEY_HEX)).hexdigest())
            page.set_input_files("#secret", str(secret))
            page.set_input_files("#data", str(csv))
            t0 = time.perf_counter()
            page.click("#check")
            page.locator("#check-summary", has_text="rows read").wait_for(timeout=3_600_000)
            check_seconds = time.perf_counter() - t0
            t0 = time.perf_counter()
            page.click("#save-sealed")
            page.locator("#verdict", has_text=re.compile("Sealed|rror")).wait_for(timeout=3_600_000)
            seal_seconds = time.perf_counter() - t0
            verdict = page.inner_text("#verdict")
            browser.close()
    rows = args.records
    print(f"records: {rows:,} (UK spec, 24 token columns + 4 attributes)")
    print(f"browser check pass:          {check_seconds:7.1f} s  {rows / check_seconds:10,.0f} rows/s")
    print(f"browser hash + seal pass:    {seal_seconds:7.1f} s  {rows / seal_seconds:10,.0f} rows/s")
    total = check_seconds + seal_seconds
    print(f"browser end to end:          {total:7.1f} s  {rows / total:10,.0f} rows/s")
    print(f"pprl hash (Python, 1 core):  {python_seconds:7.1f} s  {rows / python_seconds:10,.0f} rows/s")
    print(f"page said: {verdict}")


if __name__ == "__main__":
    main()
