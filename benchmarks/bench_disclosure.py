"""Utility of the disclosure control under the default policy, measured not assumed.

    .venv/bin/python benchmarks/bench_disclosure.py [--people 20000] [--secrets 20]

The four synthetic partners (linkage.synthetic) are encoded with the example spec; the
people are the generator's truth (perfect linkage), so what is measured is the
disclosure control's own error, not the linkage's. Each run of the mechanism uses
another enclave secret (a fresh draw of the noise). Printed:

- the mean absolute relative error of released counts of 100 or more people, under the
  default policy (cell key perturbation, then suppression and rounding to 5) beside
  rounding to 5 alone (what was released before); target <= 1%;
- the share of count figures suppressed, under each;
- the mean absolute error of released means (all, and relative for 100+ people);
- the guarantee the release states (epsilon and delta per count and per person).
"""

from __future__ import annotations

import argparse
import time
from pathlib import Path

import numpy as np
import pyarrow as pa

from linkage.disclose import disclose
from linkage.encode import Encoder
from linkage.match import PARTNER, PERSON
from linkage.spec import load_spec
from linkage.stats import compute_figures
from linkage.synthetic import generate_partners

ROOT = Path(__file__).resolve().parent.parent
SPEC = ROOT / "examples" / "spec-uk.json"


def _round(value: int, to: int) -> int:
    return int((value + to / 2) // to * to) if to > 1 else value


def _capped_mean(spread: dict[int, int], bound: int) -> float:
    n = sum(spread.values())
    return sum(min(c, bound) * k for c, k in spread.items()) / n


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--people", type=int, default=20_000)
    parser.add_argument("--secrets", type=int, default=20)
    parser.add_argument("--seed", type=int, default=11)
    parser.add_argument("--contacts-bound", type=int, help="override the policy's cap")
    args = parser.parse_args()

    spec = load_spec(SPEC)
    policy = spec.disclosure
    if args.contacts_bound:
        policy = policy.model_copy(update={"contacts_bound": args.contacts_bound})
    started = time.perf_counter()
    encoder = Encoder(spec, bytes(range(32)))
    parts = []
    for name, table in generate_partners(args.people, seed=args.seed).items():
        encoded = encoder.encode(table.drop(["person_id"])).table
        keep = [c for c in encoded.column_names if c.startswith("a_")]
        side = encoded.select(keep)
        side = side.append_column(PARTNER, pa.array([name] * side.num_rows, pa.string()))
        parts.append(side.append_column(PERSON, table.column("person_id")))
    records = pa.concat_tables(parts)
    fig = compute_figures(records, spec)
    prepared = time.perf_counter() - started

    released_names = [n for n in fig.counts if n not in fig.virtual]
    large = [n for n in released_names if fig.counts[n] >= 100]
    rounding = [abs(_round(fig.counts[n], policy.round_to) - fig.counts[n]) / fig.counts[n]
                for n in large]  # fmt: skip
    old_suppressed = sum(0 < fig.counts[n] < policy.suppress_below for n in released_names)

    errors: list[float] = []
    large_suppressed = suppressed = 0
    mean_errors: list[float] = []
    large_mean_errors: list[float] = []
    capped_errors: list[float] = []
    t0 = time.perf_counter()
    release = None
    for i in range(args.secrets):
        release = disclose(fig, policy, cell_key_secret=i.to_bytes(4, "big") * 8)
        for n in released_names:
            value = release.figures.get(n)  # None: suppressed, or left out (names)
            suppressed += value is None
            if fig.counts[n] >= 100:
                if value is None:
                    large_suppressed += 1
                else:
                    errors.append(abs(float(value) - fig.counts[n]) / fig.counts[n])
        for m, exact in fig.means.items():
            shown = release.figures.get(m)
            if shown is not None:
                mean_errors.append(abs(float(shown) - exact))
                if fig.counts[fig.mean_n[m]] >= 100:
                    large_mean_errors.append(abs(float(shown) - exact) / exact)
                    capped = _capped_mean(fig.contacts[m], policy.contacts_bound)
                    capped_errors.append(abs(float(shown) - capped) / capped)
    per_release = (time.perf_counter() - t0) / args.secrets
    assert release is not None

    print(f"synthetic partners: {len(fig.partners)}, people {args.people:,}, records "
          f"{records.num_rows:,}, prepared in {prepared:.1f} s")  # fmt: skip
    print(f"count figures released: {len(released_names)}, of 100+ people: {len(large)}")
    print(f"policy: suppress below {policy.suppress_below}, round to {policy.round_to}, "
          f"cell key epsilon {policy.cell_key.epsilon}, max perturbation "
          f"{policy.cell_key.max_perturbation}, contacts bound {policy.contacts_bound}")  # fmt: skip
    print(f"MARE of figures of 100+ people, default policy ({args.secrets} secrets): "
          f"{100 * float(np.mean(errors)):.3f}%  (max {100 * float(np.max(errors)):.2f}%)")  # fmt: skip
    print(f"MARE of figures of 100+ people, rounding to {policy.round_to} alone: "
          f"{100 * float(np.mean(rounding)):.3f}%")  # fmt: skip
    print(f"figures of 100+ people suppressed (secondary): "
          f"{100 * large_suppressed / (len(large) * args.secrets):.2f}%")  # fmt: skip
    print(f"suppression rate, default policy: "
          f"{100 * suppressed / (len(released_names) * args.secrets):.1f}% of counts; "
          f"before (primary only, zeros shown): {100 * old_suppressed / len(released_names):.1f}%")  # fmt: skip
    print(f"means shown: {len(mean_errors) / args.secrets:.0f} of {len(fig.means)} a release, "
          f"mean absolute error {float(np.mean(mean_errors)):.3f} contacts; of 100+ people: "
          f"{100 * float(np.mean(large_mean_errors)):.2f}% relative to the exact mean, "
          f"{100 * float(np.mean(capped_errors)):.2f}% to the mean of capped contacts "
          f"(the rest is the cap's bias)")  # fmt: skip
    g = release.guarantee
    print(f"guarantee per count: epsilon {g['epsilon_per_count']}, delta "
          f"{g['delta_per_count']:.2e}; per mean: epsilon {g['epsilon_per_mean']}, delta "
          f"{g['delta_per_mean']:.2e}; a person is in at most {g['counts_per_person']} counts "
          f"and {g['means_per_person']} means: epsilon {g['epsilon_per_person']} per release")  # fmt: skip
    print(f"seconds per release: {per_release:.3f}")


if __name__ == "__main__":
    main()
