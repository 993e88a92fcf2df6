"""Probabilistic linkage of the partners' hashed extracts with Splink 5.

``link_and_dedupe`` across all extracts (one extract holds contacts, not people, so the
same person may appear several times in it): u by random sampling, m by EM over two
blocking passes, predict, connected-components clustering at the spec's threshold.

The result maps each record to a person (cluster) and keeps the record's attributes;
it is record-level and never leaves the enclave: ``linkage.stats`` turns it into
aggregates and ``linkage.disclose`` decides what may be released.
"""

from __future__ import annotations

import copy
import itertools
import logging
import math
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import pyarrow as pa

from linkage.errors import MatchError
from linkage.match.backend import Backend
from linkage.match.comparisons import comparisons_for
from linkage.spec import Spec, attribute_column, bloom_column, token_columns

__all__ = ["LinkResult", "ProgressFn", "link"]

#: ``on_progress(stage, fraction_done)``
ProgressFn = Callable[[str, float], None]
PARTNER = "partner"
PERSON = "person_id"
_WEIGHT_BINS = (-math.inf, -10, -5, 0, 5, 10, 15, 20, 25, math.inf)


@dataclass
class LinkResult:
    """Per record: partner, person (cluster) id and attributes. Enclave-only."""

    records: pa.Table
    diagnostics: dict[str, Any] = field(default_factory=dict)
    timings: dict[str, float] = field(default_factory=dict)
    model: dict[str, Any] = field(
        default_factory=dict
    )  # the trained Splink model (parameters only)


def _training_rules(spec: Spec) -> list[tuple[str, ...]]:
    """Two EM blocking passes over different identifiers, so every comparison is trained."""
    by_type = {i.type: i for i in reversed(spec.identifiers)}
    passes: list[tuple[str, ...]] = []
    if "date" in by_type:
        passes.append((f"t_{by_type['date'].name}_full",))
    for kind, variant in (("uk_postcode", "full"), ("postcode", "full"), ("surname", "exact")):
        if kind in by_type:
            ident = by_type[kind]
            if variant in ident.active_variants:
                passes.append((f"t_{ident.name}_{variant}",))
                break
    if "forename" in by_type and "surname" in by_type and len(passes) < 2:
        passes.append((f"t_{by_type['forename'].name}_exact", f"t_{by_type['surname'].name}_exact"))
    return passes[:2] or [(token_columns(spec)[0].column,)]


def _deterministic_rules(spec: Spec) -> list[tuple[str, ...]]:
    rules: list[tuple[str, ...]] = []
    for ident in spec.identifiers:
        if ident.type in ("nhs_number", "id"):
            rules.append((f"t_{ident.name}_exact",))
    types = {i.type: i for i in reversed(spec.identifiers)}
    if {"forename", "surname", "date"} <= types.keys():
        rules.append((f"t_{types['forename'].name}_exact", f"t_{types['surname'].name}_exact",
                      f"t_{types['date'].name}_full"))  # fmt: skip
    return rules


def link(
    extracts: Mapping[str, pa.Table],
    spec: Spec,
    *,
    backend: Backend | None = None,
    threshold: float | None = None,
    on_progress: ProgressFn | None = None,
    seed: int = 42,
    model: dict[str, Any] | None = None,
) -> LinkResult:
    """Link ``extracts`` (partner name -> hashed extract) and cluster records into people.

    ``model``: a trained model from an earlier :class:`LinkResult` to predict with,
    instead of training (the same model gives the same answer on any backend).
    """
    from splink import Linker, SettingsCreator, block_on

    backend = backend or Backend()
    threshold = spec.matching.threshold if threshold is None else threshold
    progress = on_progress or (lambda _stage, _done: None)
    timings: dict[str, float] = {}
    started = time.perf_counter()
    if len(extracts) < 1 or sum(t.num_rows for t in extracts.values()) < 2:
        raise MatchError("at least two records are needed to link")

    keep = [tc.column for tc in token_columns(spec)]
    if spec.encoding.bloom is not None and backend.kind == "duckdb":
        keep += [bloom_column(f) for f in spec.encoding.bloom.fields]
    attributes = [attribute_column(a.name) for a in spec.attributes]
    inputs, sides = [], []
    offset = 0
    for partner in sorted(extracts):
        table = extracts[partner]
        ids = pa.array(np.arange(offset, offset + table.num_rows, dtype=np.int64))
        offset += table.num_rows
        inputs.append((partner, table.select(keep).append_column("unique_id", ids)))
        side = table.select(attributes).append_column("unique_id", ids)
        sides.append(side.append_column(PARTNER, pa.array([partner] * table.num_rows, pa.string())))
    records = pa.concat_tables(sides)

    rules = spec.blocking_rules()
    settings = SettingsCreator(
        link_type="link_and_dedupe" if len(inputs) > 1 else "dedupe_only",
        unique_id_column_name="unique_id",
        comparisons=comparisons_for(spec, dice=backend.kind == "duckdb"),
        blocking_rules_to_generate_predictions=[block_on(*rule) for rule in rules],
        retain_intermediate_calculation_columns=False,
        retain_matching_columns=False,
    )
    api = backend.api()
    sdfs = [
        api.register(backend.to_backend_table(table), dataset_display_name=f"p{i}")
        for i, (_partner, table) in enumerate(inputs)
    ]
    logging.getLogger("splink").setLevel(logging.WARNING)
    linker = Linker(sdfs if len(sdfs) > 1 else sdfs[0], _portable(model) if model else settings,
                    log_level=logging.WARNING)  # fmt: skip
    timings["load"] = time.perf_counter() - started
    progress("training", 0.1)

    t0 = time.perf_counter()
    try:
        if model is not None:
            raise _Trained
        deterministic = _deterministic_rules(spec)
        if deterministic:
            linker.training.estimate_probability_two_random_records_match(
                [block_on(*rule) for rule in deterministic], recall=0.8
            )
        linker.training.estimate_u_using_random_sampling(
            max_pairs=spec.matching.max_pairs_for_u, seed=seed
        )
        progress("training", 0.3)
        for i, rule in enumerate(_training_rules(spec)):
            linker.training.estimate_parameters_using_expectation_maximisation(
                block_on(*rule), estimate_without_term_frequencies=True
            )
            progress("training", 0.3 + 0.2 * (i + 1))
    except _Trained:
        pass
    except Exception as exc:  # Splink raises many kinds; its messages hold no record values
        raise MatchError(
            f"model training failed ({type(exc).__name__}); too few records?"
        ) from None
    timings["training"] = time.perf_counter() - t0

    t0 = time.perf_counter()
    predictions = linker.inference.predict(threshold_match_probability=min(0.5, threshold))
    timings["predict"] = time.perf_counter() - t0
    progress("clustering", 0.8)
    t0 = time.perf_counter()
    clusters = linker.clustering.cluster_pairwise_predictions_at_threshold(
        predictions, threshold_match_probability=threshold
    )
    # only the two columns needed, and the weight histogram counted in the backend:
    # the scored pairs never leave the database engine
    cluster_table = linker.misc.query_sql(  # type: ignore[no-untyped-call]
        f"SELECT unique_id, cluster_id FROM {clusters.physical_name}", output_type="pandas"
    )
    histogram = _histogram_sql(linker, predictions.physical_name)
    timings["cluster"] = time.perf_counter() - t0

    # cluster ids are record ids of a member: replace by dense person numbers
    codes = cluster_table["cluster_id"].astype("category").cat.codes.to_numpy(dtype=np.int64)
    person_of = pa.table({"unique_id": pa.array(cluster_table["unique_id"].to_numpy(dtype=np.int64)),
                          PERSON: pa.array(codes)})  # fmt: skip
    joined = records.join(person_of, "unique_id", join_type="left outer")
    diagnostics = {
        "comparisons": _parameters(linker),
        "match_weight_histogram": histogram,
    }
    trained: dict[str, Any] = linker.misc.save_model_to_json()
    for sdf in (predictions, clusters):
        sdf.drop_table_from_database_and_remove_from_cache()
    progress("done", 1.0)
    timings["total"] = time.perf_counter() - started
    return LinkResult(joined.drop(["unique_id"]), diagnostics, timings, trained)


def _portable(model: dict[str, Any]) -> dict[str, Any]:
    """A saved model with dialect quoting removed (our column names need none), so a
    model trained on one backend predicts on another."""
    portable = copy.deepcopy(model)
    portable.pop("sql_dialect", None)
    for comparison in portable.get("comparisons", []):
        for level in comparison.get("comparison_levels", []):
            level["sql_condition"] = level["sql_condition"].replace('"', "").replace("`", "")
    return portable


class _Trained(Exception):
    """Internal: skip training when a trained model is given."""


def _parameters(linker: Any) -> list[dict[str, Any]]:
    """m and u per comparison level (aggregate model parameters, safe to release)."""
    out = []
    for comparison in linker._settings_obj.comparisons:
        levels = []
        for level in comparison.comparison_levels:
            if level.is_null_level:
                continue
            levels.append({
                "level": level.label_for_charts,
                "m": _rounded(level.m_probability),
                "u": _rounded(level.u_probability),
            })  # fmt: skip
        out.append({"comparison": comparison.output_column_name, "levels": levels})
    return out


def _rounded(value: float | None) -> float | None:
    return None if value is None or not math.isfinite(value) else round(float(value), 6)


def _histogram_sql(linker: Any, table: str) -> list[dict[str, Any]]:
    """Pairs per coarse match-weight bin, counted in the backend (the counts go through
    disclosure control later)."""
    edges = [e for e in _WEIGHT_BINS if math.isfinite(e)]
    cases = " ".join(f"WHEN match_weight < {e} THEN {i}" for i, e in enumerate(edges))
    sql = f"SELECT CASE {cases} ELSE {len(edges)} END AS bin, count(*) AS pairs FROM {table} GROUP BY 1"
    frame = linker.misc.query_sql(sql, output_type="pandas")
    counts = {int(b): int(n) for b, n in zip(frame["bin"], frame["pairs"], strict=True)}
    bounds = list(itertools.pairwise(_WEIGHT_BINS))
    return [
        {
            "from": lo if math.isfinite(lo) else None,
            "to": hi if math.isfinite(hi) else None,
            "pairs": counts.get(i, 0),
        }  # fmt: skip
        for i, (lo, hi) in enumerate(bounds)
    ]
