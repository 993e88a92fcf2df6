"""Enclave linkage end to end: sealed submissions in, released figures out.

    .venv/bin/python benchmarks/bench_link.py [--records 1000000]

Four synthetic partners (about --records records in all) are hashed and sealed to an
enclave key. Then, each in a fresh child process so peak RSS is its own:

- pprl: open the sealed blobs, link with Splink (training, predict, clustering),
  compute every cohort figure, apply disclosure control;
- plain Splink: the same records and comparisons, loaded from plain Parquet, trained
  and clustered the same way, nothing else.

Prints seconds and peak RSS of each and their ratio.
"""

from __future__ import annotations

import argparse
import io
import json
import resource
import tempfile
import time
from pathlib import Path
from typing import Any

import pyarrow as pa
import pyarrow.parquet as pq
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric.x25519 import X25519PrivateKey

from linkage.disclose import disclose
from linkage.encode import Encoder
from linkage.match import link
from linkage.spec import load_spec
from linkage.stats import compute_figures
from linkage.synthetic import generate_partners
from service.crypto.sealing import open_sealed, seal_file

try:
    from benchmarks._child import run_in_child
except ImportError:  # run as a script: benchmarks/ itself is on sys.path
    from _child import run_in_child  # type: ignore[no-redef]

ROOT = Path(__file__).resolve().parent.parent
SPEC = ROOT / "examples" / "spec-uk.json"


def prepare(work: Path, records: int) -> tuple[dict[str, Path], dict[str, Path], bytes]:
    spec = load_spec(SPEC)
    encoder = Encoder(spec, bytes(range(32)))
    population = int(records / 1.2)
    tables = generate_partners(population, seed=7)
    key = X25519PrivateKey.generate()
    sealed, plain = {}, {}
    for name, table in tables.items():
        hashed = encoder.encode(table.drop(["person_id"])).table
        plain[name] = work / f"{name}.parquet"
        pq.write_table(hashed, plain[name])
        sealed[name] = work / f"{name}.sealed"
        seal_file(plain[name], sealed[name], key.public_key())
    pem = key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                            serialization.NoEncryption())  # fmt: skip
    return sealed, plain, pem


def _pprl(sealed: dict[str, str], pem: bytes, queue: Any) -> None:
    start = time.perf_counter()
    key = serialization.load_pem_private_key(pem, password=None)
    spec = load_spec(SPEC)
    extracts = {
        n: pq.read_table(io.BytesIO(b"".join(open_sealed(Path(p), key)))) for n, p in sealed.items()
    }  # type: ignore[arg-type]
    rows = sum(t.num_rows for t in extracts.values())
    result = link(extracts, spec)
    figures = compute_figures(result.records, spec)
    release = disclose(
        figures, spec.disclosure, histogram=result.diagnostics["match_weight_histogram"]
    )
    peak_mb = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    queue.put({"rows": rows, "seconds": time.perf_counter() - start, "timings": result.timings,
               "figures": len(release.figures), "peak_mb": peak_mb})  # fmt: skip


def _plain(plain: dict[str, str], queue: Any) -> None:
    from splink import DuckDBAPI, Linker, SettingsCreator, block_on

    from linkage.match.comparisons import comparisons_for

    start = time.perf_counter()
    spec = load_spec(SPEC)
    db = DuckDBAPI()
    sdfs = []
    offset = 0
    for i, (_name, path) in enumerate(sorted(plain.items())):
        table = pq.read_table(path)
        ids = pa.array(range(offset, offset + table.num_rows), pa.int64())
        offset += table.num_rows
        sdfs.append(
            db.register(table.append_column("unique_id", ids), dataset_display_name=f"p{i}")
        )
    settings = SettingsCreator(
        link_type="link_and_dedupe", comparisons=comparisons_for(spec),
        blocking_rules_to_generate_predictions=[block_on(*r) for r in spec.blocking_rules()],
    )  # fmt: skip
    linker = Linker(sdfs, settings)
    linker.training.estimate_probability_two_random_records_match(
        [block_on("t_nhs_number_exact")], recall=0.8
    )
    linker.training.estimate_u_using_random_sampling(
        max_pairs=spec.matching.max_pairs_for_u, seed=42
    )
    linker.training.estimate_parameters_using_expectation_maximisation(
        block_on("t_dob_full"), estimate_without_term_frequencies=True
    )
    linker.training.estimate_parameters_using_expectation_maximisation(
        block_on("t_postcode_full"), estimate_without_term_frequencies=True
    )
    predictions = linker.inference.predict(threshold_match_probability=0.5)
    clusters = linker.clustering.cluster_pairwise_predictions_at_threshold(predictions, 0.9)
    n = clusters.as_duckdbpyrelation().aggregate("count(*)").fetchall()[0][0]
    queue.put({"rows": n, "seconds": time.perf_counter() - start,
               "peak_mb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024})  # fmt: skip




def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--records", type=int, default=1_000_000)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        work = Path(tmp)
        t0 = time.perf_counter()
        sealed, plain, pem = prepare(work, args.records)
        print(f"prepared {len(sealed)} sealed partner extracts in {time.perf_counter() - t0:.0f} s")
        ours = run_in_child(_pprl, {k: str(v) for k, v in sealed.items()}, pem)
        base = run_in_child(_plain, {k: str(v) for k, v in plain.items()})
        ratio = ours["seconds"] / base["seconds"]
        print(
            f"pprl (sealed -> released): {ours['rows']:,} records  {ours['seconds']:6.1f} s  "
            f"peak RSS {ours['peak_mb'] / 1024:.2f} GB  ({ours['figures']} figures released)"
        )
        print("   stages: " + ", ".join(f"{k} {v:.1f} s" for k, v in ours["timings"].items()))
        print(
            f"plain Splink:              {base['rows']:,} records  {base['seconds']:6.1f} s  "
            f"peak RSS {base['peak_mb'] / 1024:.2f} GB"
        )
        print(f"ratio pprl / plain Splink: {ratio:.2f}")
        print(json.dumps({"pprl": ours, "plain": base, "ratio": ratio}))


if __name__ == "__main__":
    main()
