"""Partner-side hashing speed and memory: `pprl hash` on generated UK records.

    .venv/bin/python benchmarks/bench_hash.py [--records 1000000] [--inputs csv,xlsx]

Generates the records once as a partner's export would be (CSV, and an .xlsx workbook
written by openpyxl), then hashes them in a fresh child process per configuration so
peak RSS is the hashing alone. Prints records/s, seconds and peak RSS, and checks that
RSS stays flat when the input grows (a quarter of the records vs all of them). The
encoder is single-threaded; .xlsx is read by openpyxl in read-only streaming mode,
which is slower than pyarrow's CSV parser.
"""

from __future__ import annotations

import argparse
import json
import multiprocessing as mp
import os
import resource
import tempfile
import time
from pathlib import Path

import pyarrow as pa
import pyarrow.csv as pacsv

from linkage.encode import hash_file
from linkage.spec import Spec, load_spec
from linkage.synthetic import generate_partners

ROOT = Path(__file__).resolve().parent.parent


def make_input(path: Path, records: int) -> None:
    """Write ``records`` rows of generated partner data (all partners stacked) as CSV."""
    written = 0
    seed = 1
    with pacsv.CSVWriter(path, schema=_schema()) as writer:
        while written < records:
            tables = generate_partners(250_000, seed=seed)
            for table in tables.values():
                table = table.drop(["person_id"]).slice(0, records - written)
                writer.write_table(table)
                written += table.num_rows
                if written >= records:
                    break
            seed += 1


def make_xlsx(csv_path: Path, path: Path) -> None:
    """The same rows as an .xlsx workbook (write-only mode: streams, flat memory)."""
    from openpyxl import Workbook

    workbook = Workbook(write_only=True)
    sheet = workbook.create_sheet("extract")
    reader = pacsv.open_csv(
        csv_path,
        convert_options=pacsv.ConvertOptions(
            column_types=dict.fromkeys(_schema().names, pa.string())
        ),
    )
    sheet.append(_schema().names)
    for batch in reader:
        for row in zip(*(col.to_pylist() for col in batch.columns), strict=True):
            sheet.append(list(row))
    workbook.save(path)


def _schema() -> pa.Schema:
    t = generate_partners(50, seed=0)["housing"].drop(["person_id"])
    return t.schema


def _spec(bloom: bool) -> Spec:
    spec = load_spec(ROOT / "examples" / "spec-uk.json")
    if bloom:
        data = spec.model_dump(mode="json")
        data["encoding"]["bloom"] = {"fields": ["forename", "surname"], "hardening": "balance"}
        spec = Spec.model_validate(data)
    return spec


def _run(source: str, bloom: bool, out: str, queue: mp.Queue) -> None:  # type: ignore[type-arg]
    # one core, as the claim says: pinned, and pyarrow's thread pools cut to one thread
    os.sched_setaffinity(0, {min(os.sched_getaffinity(0))})
    pa.set_cpu_count(1)
    pa.set_io_thread_count(1)
    spec = _spec(bloom)
    start, cpu_start = time.perf_counter(), time.process_time()
    manifest = hash_file(spec, bytes(range(32)), source, out, force=True)
    seconds = time.perf_counter() - start
    cpu = time.process_time() - cpu_start
    peak_mb = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    queue.put({"rows": manifest.rows_written + manifest.rows_rejected, "seconds": seconds,
               "cpu_seconds": cpu, "peak_mb": peak_mb})  # fmt: skip


def measure(source: Path, bloom: bool, workdir: Path) -> dict[str, float]:
    ctx = mp.get_context("spawn")
    queue: mp.Queue = ctx.Queue()  # type: ignore[type-arg]
    proc = ctx.Process(target=_run, args=(str(source), bloom, str(workdir / "out.parquet"), queue))
    proc.start()
    result = queue.get()
    proc.join()
    result["records_per_s"] = result["rows"] / result["seconds"]
    # on a shared machine wall time includes waiting for the core: CPU time is the cost
    result["records_per_cpu_s"] = result["rows"] / result["cpu_seconds"]
    return result


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--records", type=int, default=1_000_000)
    parser.add_argument("--inputs", default="csv,xlsx", help="comma-separated: csv, xlsx")
    args = parser.parse_args()
    inputs = args.inputs.split(",")
    with tempfile.TemporaryDirectory() as tmp:
        work = Path(tmp)
        small, full = work / "quarter.csv", work / "full.csv"
        t0 = time.perf_counter()
        make_input(full, args.records)
        make_input(small, args.records // 4)
        print(f"generated {args.records:,} records in {time.perf_counter() - t0:.0f} s "
              f"({full.stat().st_size / 1e6:.0f} MB CSV)")  # fmt: skip
        runs: list[tuple[str, Path, Path, bool]] = []
        if "csv" in inputs:
            runs.append(("CSV, tokens only", small, full, False))
            runs.append(("CSV, with Bloom filters (forename, surname)", small, full, True))
        if "xlsx" in inputs:
            t0 = time.perf_counter()
            small_x, full_x = work / "quarter.xlsx", work / "full.xlsx"
            make_xlsx(small, small_x)
            make_xlsx(full, full_x)
            print(f"wrote the .xlsx workbooks in {time.perf_counter() - t0:.0f} s "
                  f"({full_x.stat().st_size / 1e6:.0f} MB)")  # fmt: skip
            runs.append((".xlsx, tokens only", small_x, full_x, False))
        report = {}
        for label, small_in, full_in, bloom in runs:
            quarter = measure(small_in, bloom, work)
            whole = measure(full_in, bloom, work)
            report[label] = {"quarter": quarter, "full": whole}
            print(
                f"{label:44s} {whole['rows']:>9,} records  {whole['seconds']:6.1f} s  "
                f"{whole['records_per_s']:>9,.0f} records/s wall, "
                f"{whole['records_per_cpu_s']:>9,.0f} per CPU-second  peak RSS {whole['peak_mb']:.0f} MB "
                f"(at {quarter['rows']:,} records: {quarter['peak_mb']:.0f} MB)"
            )
        print(json.dumps(report))


if __name__ == "__main__":
    main()
