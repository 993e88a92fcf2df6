"""Probabilistic linkage of the partners' hashed extracts with Splink 5.

``link_and_dedupe`` across all extracts (one extract holds contacts, not people, so the
same person may appear several times in it). Everything data-dependent is decided here,
inside the enclave, from aggregate facts about the tokens: blocking rules are checked
against a pair budget (``linkage.match.blocking``), training avoids degenerate columns
and estimates its prior (``linkage.match.training``), and clustering refuses to chain
strangers (``linkage.match.clustering``). Each record also gets its person at a stricter
and a looser threshold, from which every released figure gets a plausible range.

The result maps each record to a person (cluster) and keeps the record's attributes;
it is record-level and never leaves the enclave: ``linkage.stats`` turns it into
aggregates and ``linkage.disclose`` decides what may be released.
"""

from __future__ import annotations

import contextlib
import copy
import itertools
import logging
import math
import time
import warnings
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass, field
from typing import Any, Literal

import numpy as np
import pandas as pd
import pyarrow as pa

from linkage.errors import MatchError
from linkage.match.backend import Backend, releases_backend
from linkage.match.blocking import (
    DEFAULT_MAX_PAIRS_PER_RULE,
    Rule,
    as_splink_rule,
    plan_blocking,
)
from linkage.match.clustering import balanced_threshold, cautious_clusters, connected_components
from linkage.match.comparisons import EXTRACT_NUMBER, comparisons_for, origin_comparison
from linkage.match.profile import PERSONAL_TYPES, mask_dominant, profile_columns
from linkage.match.training import DEFAULT_EM_MAX_PAIRS, refine_prior, train
from linkage.spec import Spec, attribute_column, bloom_column, token_column, token_columns

__all__ = ["LINK_STRENGTH", "PERSON_LOOSE", "PERSON_STRICT", "LinkResult", "ProgressFn", "link"]

#: ``on_progress(stage, fraction_done)``
ProgressFn = Callable[[str, float], None]
PARTNER = "partner"
PERSON = "person_id"
#: the person at a stricter / looser match threshold: the range of every released figure
PERSON_STRICT = "person_id_strict"
PERSON_LOOSE = "person_id_loose"
#: per record, the match-weight band of its person's weakest link (null: one record)
LINK_STRENGTH = "link_strength"
#: lower edges of those bands (match weight, log2 odds); the first starts at the threshold
STRENGTH_EDGES = (5.0, 10.0, 15.0, 20.0)
#: the highest threshold "balanced" links at when the spec fixes none (Splink's usual
#: strict threshold): balanced never links looser than 0.5 nor stricter than this
BALANCED_CEILING = 0.9
#: how far (in match weight, log2 odds) the stricter and looser thresholds lie from the
#: spec's: a factor of 10 in the odds either way (0.9 -> 0.47 and 0.989)
UNCERTAINTY_BITS = math.log2(10)
#: blocked pairs scored in one pass of Splink's predict: beyond it, predict runs in
#: chunks (Splink's ``num_chunks_left``), so the pairs held at once, and what DuckDB
#: must spill, stay bounded whatever the size of the linkage
PREDICT_CHUNK_PAIRS = 60_000_000
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


def _label(spec: Spec) -> dict[str, str]:
    """Token column -> ``field.variant``, for messages an analyst reads."""
    return {tc.column: f"{tc.field}.{tc.variant}" for tc in token_columns(spec)}


def _refiners(spec: Spec, present: set[str]) -> list[str]:
    """Columns that may narrow a blocking rule over budget, most selective first."""
    wanted = [("date", "year"), ("sex", "exact"), ("forename", "initial"), ("surname", "initial")]
    out = []
    for kind, variant in wanted:
        for ident in spec.identifiers:
            column = f"t_{ident.name}_{variant}"
            if ident.type == kind and column in present:
                out.append(column)
    return out


def _extra_rules(spec: Spec, label: dict[str, str]) -> list[Rule]:
    """Rules added to the spec's for recall under the errors real data has (each still
    checked against the pair budget): an id with one mistyped character (one rule per
    masked third), date of birth with postcode (both names wrong), and forename and
    surname swapped (symmetric, so it finds the pair whichever record is on the left)."""
    rules: list[Rule] = []
    by_type = {i.type: i for i in reversed(spec.identifiers)}
    for ident in spec.identifiers:
        if ident.type == "id":
            rules += [(token_column(ident.name, m),) for m in ("mask1", "mask2", "mask3")
                      if m in ident.active_variants]  # fmt: skip
    dob, pc = by_type.get("date"), by_type.get("uk_postcode") or by_type.get("postcode")
    if dob is not None and pc is not None:
        rules.append((token_column(dob.name, "full"), token_column(pc.name, "full")))
    fore, sur = by_type.get("forename"), by_type.get("surname")
    swaps = fore is not None and sur is not None and "swap" in fore.active_variants
    if swaps and fore is not None and sur is not None and "swap" in sur.active_variants:
        f, s = token_column(fore.name, "swap"), token_column(sur.name, "swap")
        rule = f"l.{f} = r.{s} AND l.{s} = r.{f}"
        label[rule] = f"{fore.name} and {sur.name} swapped"
        rules.append(rule)
    existing = set(spec.blocking_rules())
    return [r for r in rules if r not in existing]


def predict_chunks(pairs: list[int], per_chunk: int = PREDICT_CHUNK_PAIRS) -> int:
    """How many chunks predict needs so that each scores at most about ``per_chunk`` of
    the blocked pairs (``pairs``: per rule, -1 where not counted because small)."""
    total = sum(n for n in pairs if n > 0)
    return max(1, math.ceil(total / per_chunk))


def weight_of(probability: float) -> float:
    """Match weight (log2 odds) of a match probability."""
    return math.log2(probability / (1 - probability))


def probability_of(weight: float) -> float:
    """Match probability of a match weight."""
    return 1 / (1 + 2 ** (-weight))


def _one_line(message: str) -> str:
    text = " ".join(w for w in message.replace("-- WARNING --", "").split() if w != "WARNING:")
    return text[:300]


@contextlib.contextmanager
def _splink_logs_to(logger: logging.Logger) -> Iterator[None]:
    """Send Splink's log records and Python warnings to ``logger`` (structured logs
    stay structured), restoring Splink's logger afterwards."""
    splink_logger = logging.getLogger("splink")
    saved = (splink_logger.level, splink_logger.propagate, list(splink_logger.handlers))

    class _Forward(logging.Handler):
        def emit(self, record: logging.LogRecord) -> None:
            # one line, at most 300 characters: Splink's messages hold no record values,
            # but keep them short and plain
            logger.log(record.levelno, "splink: %s", _one_line(record.getMessage()))

    for handler in saved[2]:
        splink_logger.removeHandler(handler)
    splink_logger.addHandler(_Forward(logging.WARNING))
    splink_logger.setLevel(logging.WARNING)
    splink_logger.propagate = False
    try:
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always")
            yield
        for item in caught:
            logger.warning("splink: %s", _one_line(str(item.message)))
    finally:
        for handler in list(splink_logger.handlers):
            splink_logger.removeHandler(handler)
        for handler in saved[2]:
            splink_logger.addHandler(handler)
        splink_logger.setLevel(saved[0])
        splink_logger.propagate = saved[1]


@releases_backend
def link(
    extracts: Mapping[str, pa.Table],
    spec: Spec,
    *,
    backend: Backend | None = None,
    threshold: float | Literal["balanced"] | None = None,
    on_progress: ProgressFn | None = None,
    seed: int = 42,
    model: dict[str, Any] | None = None,
    max_pairs_per_rule: int = DEFAULT_MAX_PAIRS_PER_RULE,
    em_max_pairs: int = DEFAULT_EM_MAX_PAIRS,
    logger: logging.Logger | None = None,
    clustering: Literal["cautious", "connected_components"] = "cautious",
    predict_chunks: int | None = None,
) -> LinkResult:
    """Link ``extracts`` (partner name -> hashed extract) and cluster records into people.

    ``model``: a trained model from an earlier :class:`LinkResult` to predict with,
    instead of training (the same model gives the same answer on any backend).
    ``max_pairs_per_rule``: the pair budget of one prediction blocking rule;
    ``em_max_pairs``: pairs sampled for each EM pass. ``logger`` receives Splink's
    warnings (default ``linkage.match``). ``clustering``: ``cautious`` (default; see
    ``linkage.match.clustering``) or plain ``connected_components``.
    ``predict_chunks``: score the blocked pairs in this many passes (default: enough
    passes of at most :data:`PREDICT_CHUNK_PAIRS` pairs each, as the blocking plan
    counted them; one pass when a ``model`` is given).
    ``threshold``: the match probability to link at (default: the spec's, itself
    ``"balanced"`` by default); or ``"balanced"``: the probability at which the model
    expects as many false links as missed ones (see
    ``linkage.match.clustering.balanced_threshold``), at least 0.5 and at most the
    spec's fixed threshold (:data:`BALANCED_CEILING` if it fixes none), so that counts
    of people are not biased down by the uncertain pairs a strict threshold leaves
    unlinked.

    A linkage with records but no matching pairs gives every record its own person.
    """
    log = logger or logging.getLogger("linkage.match")
    with _splink_logs_to(log):
        return _link(extracts, spec, backend or Backend(), threshold, on_progress, seed, model,
                     max_pairs_per_rule, em_max_pairs, log, clustering,
                     predict_chunks)  # fmt: skip


def _link(
    extracts: Mapping[str, pa.Table],
    spec: Spec,
    backend: Backend,
    threshold: float | Literal["balanced"] | None,
    on_progress: ProgressFn | None,
    seed: int,
    model: dict[str, Any] | None,
    max_pairs_per_rule: int,
    em_max_pairs: int,
    log: logging.Logger,
    clustering: str,
    predict_chunks_wanted: int | None,
) -> LinkResult:
    from splink import Linker, SettingsCreator

    # balanced links between 0.5 and a ceiling: the spec's fixed threshold if it has one
    fixed = spec.matching.threshold
    ceiling = BALANCED_CEILING if fixed == "balanced" else fixed
    chosen = fixed if threshold is None else threshold
    balanced = chosen == "balanced"
    threshold = ceiling if chosen == "balanced" else chosen
    progress = on_progress or (lambda _stage, _done: None)
    timings: dict[str, float] = {}
    started = time.perf_counter()
    if len(extracts) < 1 or sum(t.num_rows for t in extracts.values()) < 2:
        raise MatchError("at least two records are needed to link")

    columns = [tc.column for tc in token_columns(spec)]
    keep = list(columns)
    if spec.encoding.bloom is not None and backend.kind == "duckdb":
        keep += [bloom_column(f) for f in spec.encoding.bloom.fields]
    attributes = [attribute_column(a.name) for a in spec.attributes]
    inputs, sides, sizes = [], [], []
    offset = 0
    for partner in sorted(extracts):
        table = extracts[partner]
        if table.num_rows == 0:
            continue  # nothing to link; its partner still appears in the figures as zeros
        ids = pa.array(np.arange(offset, offset + table.num_rows, dtype=np.int64))
        offset += table.num_rows
        sizes.append(table.num_rows)
        inputs.append((partner, table.select(keep).append_column("unique_id", ids)))
        side = table.select(attributes).append_column("unique_id", ids)
        sides.append(side.append_column(PARTNER, pa.array([partner] * table.num_rows, pa.string())))
    records = pa.concat_tables(sides)
    n_records = offset
    label = _label(spec)
    link_type: Literal["link_and_dedupe", "dedupe_only"] = (
        "link_and_dedupe" if len(inputs) > 1 else "dedupe_only"
    )

    api = backend.api()
    if backend.kind == "duckdb":
        # DuckDB draws progress bars on stdout for long queries: not among JSON logs
        api.duckdb_con.execute("SET enable_progress_bar = false")
    diagnostics: dict[str, Any] = {"warnings": []}
    personal = {i.name: [token_column(i.name, v) for v in i.active_variants]
                for i in spec.identifiers if i.type in PERSONAL_TYPES}  # fmt: skip
    masked, dominant = mask_dominant([t for _p, t in inputs], personal)
    inputs = [
        (p, t.append_column(EXTRACT_NUMBER, pa.array(np.full(t.num_rows, i, dtype=np.int32))))
        for i, ((p, _old), t) in enumerate(zip(inputs, masked, strict=True))
    ]
    diagnostics["warnings"] += [
        f"{name}: one value covers {share:.0%} of the records that have one; "
        "read as missing there (a shared address or placeholder says nothing of who it is)"
        for name, share in dominant.items()
    ]
    sdfs = [backend.register(api, table, f"p{i}") for i, (_partner, table) in enumerate(inputs)]
    profiles = profile_columns([t for _p, t in inputs], columns)
    chunks = 1
    if model is None:
        rules: list[Rule] = [*spec.blocking_rules(), *_extra_rules(spec, label)]
        plan = plan_blocking(sdfs, rules, link_type=link_type,
                             profiles=profiles, refiners=_refiners(spec, set(columns)),
                             label=label, max_pairs=max_pairs_per_rule)  # fmt: skip
        diagnostics["blocking"] = plan.summary(label)
        chunks = predict_chunks(plan.pairs)
        diagnostics["warnings"] += plan.warnings
        settings: Any = SettingsCreator(
            link_type=link_type,
            unique_id_column_name="unique_id",
            comparisons=[
                *comparisons_for(spec, dice=backend.kind == "duckdb"),
                *([origin_comparison()] if link_type == "link_and_dedupe" else []),
            ],
            blocking_rules_to_generate_predictions=[as_splink_rule(r) for r in plan.rules],
            retain_intermediate_calculation_columns=False,
            retain_matching_columns=False,
        )
    else:
        settings = _portable(model)
    if predict_chunks_wanted is not None:
        chunks = max(1, predict_chunks_wanted)
    linker = Linker(sdfs if len(sdfs) > 1 else sdfs[0], settings, log_level=None)
    timings["load"] = time.perf_counter() - started
    progress("training", 0.1)

    t0 = time.perf_counter()
    if model is None:
        report = train(linker, sdfs, spec, profiles, link_type=link_type, sizes=sizes,
                       label=label, seed=seed, em_max_pairs=em_max_pairs, logger=log)  # fmt: skip
        diagnostics["training"] = report.summary()
        diagnostics["warnings"] += report.warnings
    timings["training"] = time.perf_counter() - t0
    progress("predicting", 0.5)

    # scored at a looser threshold than the one linked at: the range of the released
    # figures (uncertainty) and the support for merges both need the weaker pairs
    # (balanced: the threshold lies between 0.5 and the spec's; score for the lowest)
    base_w = 0.0 if balanced else weight_of(threshold)
    strict_w, loose_w = base_w + UNCERTAINTY_BITS, base_w - UNCERTAINTY_BITS
    t0 = time.perf_counter()
    predictions = linker.inference.predict(
        threshold_match_probability=min(probability_of(loose_w), 0.5),
        num_chunks_left=chunks,
        num_chunks_right=1,
    )
    timings["predict"] = time.perf_counter() - t0
    diagnostics["predict_chunks"] = chunks
    progress("clustering", 0.8)
    t0 = time.perf_counter()
    # only three columns leave the engine, and the histogram is counted in it
    edges = linker.misc.query_sql(  # type: ignore[no-untyped-call]
        # in one order on every backend: ties in weight are then broken alike
        f"SELECT unique_id_l, unique_id_r, match_weight FROM {predictions.physical_name} "
        "ORDER BY unique_id_l, unique_id_r",
        output_type="pandas",
    )
    left = edges["unique_id_l"].to_numpy(dtype=np.int64)
    right = edges["unique_id_r"].to_numpy(dtype=np.int64)
    weight = edges["match_weight"].to_numpy(dtype=np.float64)
    del edges
    shift = 0.0
    if model is None:
        # the prior checked against the model's own expected matches; the weights of
        # the scored pairs move with it (and the saved model carries it)
        estimated = diagnostics["training"]
        prior = linker._settings_obj._probability_two_random_records_match
        refined = refine_prior(weight, n_records, prior, report.rule_recall)
        if refined != prior:
            shift = weight_of(refined) - weight_of(prior)
            weight = weight + shift
            linker._settings_obj._probability_two_random_records_match = refined
            estimated["prior"] = float(f"{refined:.2g}")
            if report.rule_recall is not None:
                # the rules found the same pairs: of more expected matches, a smaller share
                recall = report.rule_recall * prior / refined
                estimated["deterministic_recall"] = round(recall, 2)
            estimated["prior_method"] += (
                ", then refined to the model's own expected share of matching pairs"
            )
    histogram = _histogram_sql(linker, predictions.physical_name, shift)
    predictions.drop_table_from_database_and_remove_from_cache()
    if balanced:
        threshold = balanced_threshold(weight, 0.5, threshold)
        base_w = weight_of(threshold)
        strict_w, loose_w = base_w + UNCERTAINTY_BITS, base_w - UNCERTAINTY_BITS
        # support and range from the pairs at the looser threshold, as otherwise
        keep = weight >= loose_w
        left, right, weight = left[keep], right[keep], weight[keep]
    if clustering == "connected_components":
        person, refused = connected_components(n_records, left, right, weight >= base_w), 0
    else:
        person, refused = cautious_clusters(n_records, left, right, weight, base_w)
    strict = connected_components(n_records, left, right, weight >= strict_w)
    loose = connected_components(n_records, left, right, weight >= loose_w)
    timings["cluster"] = time.perf_counter() - t0

    ids = records.column("unique_id").to_numpy()
    joined = records.append_column(PERSON, pa.array(_dense(person)[ids]))
    joined = joined.append_column(PERSON_STRICT, pa.array(_dense(strict)[ids]))
    joined = joined.append_column(PERSON_LOOSE, pa.array(_dense(loose)[ids]))
    strength = _link_strength(n_records, left, right, weight, person)
    joined = joined.append_column(LINK_STRENGTH, pa.array(strength[ids], pa.string()))
    diagnostics["comparisons"] = _parameters(linker)
    diagnostics["match_weight_histogram"] = histogram
    diagnostics["clustering"] = {
        "method": "strongest links first; groups merge only with support from half "
                  "their cross pairs (plain connected components for the range)",
        "threshold": round(threshold, 4),
        "threshold_method": "balanced: as many false links as missed ones expected, "
                            "within 0.5 and the spec's" if balanced else "given",
        "range_thresholds": [round(probability_of(strict_w), 4), round(probability_of(loose_w), 4)],
        "merges_refused": int(round(refused, -1)),
    }  # fmt: skip
    diagnostics["columns"] = {
        label[c]: profiles[c].summary() for c in columns if profiles[c].filled
    }
    trained: dict[str, Any] = linker.misc.save_model_to_json()
    progress("done", 1.0)
    timings["total"] = time.perf_counter() - started
    return LinkResult(joined.drop(["unique_id"]), diagnostics, timings, trained)


def link_strength_bands() -> list[str]:
    """Names of the link-strength bands, weakest first (``under_5`` .. ``20_plus``)."""
    labels = [f"under_{int(STRENGTH_EDGES[0])}"]
    labels += [f"{int(a)}_{int(b)}" for a, b in itertools.pairwise(STRENGTH_EDGES)]
    return [*labels, f"{int(STRENGTH_EDGES[-1])}_plus"]


def _link_strength(
    n: int, left: np.ndarray, right: np.ndarray, weight: np.ndarray, person: np.ndarray
) -> np.ndarray:
    """Per record, the band of its person's weakest link: for each record the strongest
    pair joining it to another record of its person, then the weakest of those over
    the person. One number per person, so a count of people per band moves by at most
    one when one person changes (a histogram of pairs would not)."""
    inside = person[left] == person[right]
    best = np.full(n, -np.inf)
    np.maximum.at(best, left[inside], weight[inside])
    np.maximum.at(best, right[inside], weight[inside])
    weakest = pd.Series(best).groupby(person).transform("min").to_numpy()
    band = np.asarray(link_strength_bands(), dtype=object)[
        np.searchsorted(STRENGTH_EDGES, weakest, "right")
    ]
    band[~np.isfinite(weakest)] = None  # a person of one record has no link
    return band


def _dense(labels: np.ndarray) -> np.ndarray:
    """Labels renumbered 0..k-1 (cluster labels must not carry record ids out), in the
    order of each cluster's first record: the numbering then depends only on the
    partition, not on which member became a root (which varies with the engine's pair
    order), and the person keys behind the cell-key noise agree across backends."""
    _, first, dense = np.unique(labels, return_index=True, return_inverse=True)
    rank = np.empty(len(first), dtype=np.int64)
    rank[np.argsort(first, kind="stable")] = np.arange(len(first), dtype=np.int64)
    return rank[dense.reshape(-1)]


def _portable(model: dict[str, Any]) -> dict[str, Any]:
    """A saved model with dialect quoting removed (our column names need none), so a
    model trained on one backend predicts on another."""
    portable = copy.deepcopy(model)
    portable.pop("sql_dialect", None)
    for comparison in portable.get("comparisons", []):
        for level in comparison.get("comparison_levels", []):
            level["sql_condition"] = level["sql_condition"].replace('"', "").replace("`", "")
    return portable


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


def _histogram_sql(linker: Any, table: str, shift: float = 0.0) -> list[dict[str, Any]]:
    """Pairs per coarse match-weight bin (weights moved by ``shift``), counted in the
    backend (the counts go through disclosure control later)."""
    edges = [e for e in _WEIGHT_BINS if math.isfinite(e)]
    moved = f"(match_weight + {float(shift)!r})"
    cases = " ".join(f"WHEN {moved} < {e} THEN {i}" for i, e in enumerate(edges))
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
