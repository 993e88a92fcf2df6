"""Hypothesis strategies for released JSON documents (shape as the enclave writes them)."""

from __future__ import annotations

from itertools import combinations
from typing import Any

from hypothesis import strategies as st

PARTNERS = ["a_and_e", "housing", "police", "social_care", "vcs"]


@st.composite
def releases(draw: st.DrawFn, max_partners: int = 4) -> dict[str, Any]:
    """A release with random values, suppressions (with or without reasons) and held cells."""
    partners = sorted(draw(st.lists(st.sampled_from(PARTNERS), min_size=2, max_size=max_partners,
                                    unique=True)))  # fmt: skip
    areas = [f"LS{n}" for n in draw(st.lists(st.integers(1, 30), min_size=1, max_size=12,
                                             unique=True))]  # fmt: skip
    attributes = {"area": [*areas, "unknown"], "age_band": ["0-17", "18-24", "25-34", "unknown"]}
    count = st.one_of(st.none(), st.integers(0, 5000))
    names: list[str] = []
    for cohort in ("persons", "frequent"):
        names += [f"{cohort}.total"] + [f"{cohort}.partner.{p}" for p in partners]
        for k in range(1, len(partners) + 1):
            names += [f"{cohort}.only.{'+'.join(c)}" for c in combinations(partners, k)]
        names += [f"{cohort}.both.{a}+{b}" for a, b in combinations(partners, 2)]
        names += [f"{cohort}.at_least_{k}" for k in (2, 3) if len(partners) >= k]
    names.append("multi.total")
    figures: dict[str, Any] = {n: draw(count) for n in names}
    for attr, values in attributes.items():
        for value in values:
            for cohort in ("persons", "multi", "frequent"):
                base = f"{cohort}.by.{attr}.{value}"
                figures[f"{base}.count"] = draw(count)
                if draw(st.booleans()):
                    figures[f"{base}.mean_contacts"] = draw(
                        st.one_of(st.none(), st.floats(0, 99, allow_nan=False).map(lambda x: round(x, 1)))
                    )  # fmt: skip
    if draw(st.booleans()):  # plausible ranges on the overlap figures, as linkage adds them
        for name in [n for n in figures if n.startswith("persons.") and ".by." not in n]:
            figures[f"{name}.low"], figures[f"{name}.high"] = draw(count), draw(count)
    if draw(st.booleans()):  # a category and the two-way tables of the others by it
        needs = ["housing", "mental_health", "unknown"]
        attributes["need"] = needs
        for cohort in ("persons", "multi", "frequent"):
            for value in needs:
                figures[f"{cohort}.by.need.{value}.count"] = draw(count)
            for attr in ("area", "age_band"):
                for value in attributes[attr]:
                    for need in needs:
                        figures[f"{cohort}.cross.{attr}.{value}.need.{need}.count"] = draw(count)
    if draw(st.booleans()):  # the linkage-quality pack
        figures["quality.single_record.total"] = draw(count)
        figures.update({f"quality.single_record.partner.{p}": draw(count) for p in partners})
        figures.update({f"quality.link_strength.{b}": draw(count) for b in ("0-5", "5-10", "10+")})
    suppressed = sorted(n for n, v in figures.items() if v is None)
    with_reasons = draw(st.booleans())
    release: dict[str, Any] = {
        "run_id": "8f14e45f-ceea-467f-a2b2-1c5e0a7e2c11",
        "project_id": "p1",
        "released_at": "2026-11-23T10:00:00+00:00",
        "released_to": "ann-analyst",
        "partners": partners,
        "attributes": list(attributes),
        "frequent_threshold": 10,
        "match_threshold": 0.9,
        "policy": {
            "style": "nhs",
            "suppress_below": 8,
            "round_to": 5,
            "min_n_for_mean": 10,
            "dp": None,
        },
        "figures": figures,
        "suppressed": suppressed,
        "epsilon_spent": 0.0,
        "diagnostics": {
            "comparisons": [],
            "match_weight_histogram": [],
            "submissions": len(partners),
        },
    }
    if with_reasons:
        release["suppressed_reason"] = {
            n: draw(st.sampled_from(["primary", "secondary"])) for n in suppressed
        }
        released_names = sorted(n for n, v in figures.items() if v is not None)
        release["held"] = draw(st.lists(st.sampled_from(released_names), unique=True, max_size=5)
                               if released_names else st.just([]))  # fmt: skip
    return release


def enclave_release(
    spec: Any, seed: int = 1, people: int = 300, sectors: list[str] | None = None
) -> dict[str, Any]:
    """A release made the enclave's way (exact figures, then disclosure control) from
    synthetic linked records, so the tables read the names the enclave really writes."""
    import numpy as np
    import pyarrow as pa

    from linkage.disclose import disclose
    from linkage.match import PARTNER, PERSON
    from linkage.stats import compute_figures

    rng = np.random.default_rng(seed)
    rows: list[dict[str, Any]] = []
    for person in range(people):
        for p in [p for p in ("housing", "police") if rng.random() < 0.6] or ["police"]:
            rows.append({PARTNER: p, PERSON: person,
                         "a_age_band": str(rng.choice(["18-24", "25-34", "85+"], p=[0.5, 0.47, 0.03])),
                         "a_area": str(rng.choice(["LS1", "LS2", "LS10"], p=[0.6, 0.38, 0.02])),
                         "a_contacts": int(rng.poisson(6)),
                         "a_need": str(rng.choice(["housing", "offending"], p=[0.9, 0.1])),
                         **({"a_sector": str(rng.choice(sectors))} if sectors else {})})  # fmt: skip
    fig = compute_figures(pa.Table.from_pylist(rows), spec, frequent_threshold=10)
    release = disclose(fig, spec.disclosure, cell_key_secret=bytes([seed]) * 32)
    return {
        "run_id": f"run-{seed}", "project_id": "p1", "released_at": "2026-11-23T10:00:00+00:00",
        "released_to": "ann-analyst", "partners": fig.partners, "attributes": fig.attributes,
        "frequent_threshold": 10, "match_threshold": 0.9,
        "policy": spec.disclosure.model_dump(mode="json"), "figures": release.figures,
        "suppressed": release.suppressed, "suppressed_reason": release.suppressed_reason,
        "epsilon_spent": 0.0, "diagnostics": {"comparisons": [], "match_weight_histogram": []},
    }  # fmt: skip
