"""The shared normalisation vectors still describe linkage/ exactly.

``normalisation.json`` is the single source of truth for two encoders: ``pprl hash``
(Python) and the browser partner page (partner-web/, checked by its Node tests). If this
test fails, normalisation changed: regenerate the file with
``.venv/bin/python -m tests.vectors.make_vectors`` and make the page agree.
"""

from __future__ import annotations

import json

from tests.vectors.make_vectors import VECTORS, build


def test_vectors_match_the_python_encoder() -> None:
    stored = json.loads(VECTORS.read_text("utf-8"))
    fresh = json.loads(json.dumps(build(), sort_keys=True, ensure_ascii=False))
    for section in ("names", "nhs_numbers", "uk_postcodes", "sexes", "generic", "ids", "dates"):
        assert fresh["cases"][section] == stored["cases"][section], f"cases.{section} drifted"
    for new, old in zip(fresh["tables"], stored["tables"], strict=True):
        assert new["kit"] == old["kit"], f"the partner kit of {old['spec']['name']} drifted"
        assert new["rejects"] == old["rejects"]
        assert new["output"] == old["output"], f"tokens of {old['spec']['name']} drifted"
    assert fresh == stored


def test_vectors_cover_every_identifier_type_and_variant() -> None:
    from linkage.spec import VARIANTS_BY_TYPE

    stored = json.loads(VECTORS.read_text("utf-8"))
    covered = {(c["identifier"], c["variant"]) for t in stored["tables"] for c in t["kit"]["columns"]
               if c["kind"] == "token"}  # fmt: skip
    types = {i["name"]: i["type"] for t in stored["tables"] for i in t["kit"]["identifiers"]}
    seen = {(types[ident], variant) for ident, variant in covered}
    missing = {(t, v) for t, vs in VARIANTS_BY_TYPE.items() for v in vs} - seen
    assert not missing, f"no vectors for {sorted(missing)}"
    assert sum(len(t["output"]) for t in stored["tables"]) >= 1000
