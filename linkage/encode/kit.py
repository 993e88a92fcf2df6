"""The partner kit: a spec resolved into exactly what an encoder outside Python needs.

The browser partner page (``partner-web/``) does not re-implement the spec's rules
(defaults, active variants, which token shares which HMAC domain, the output columns
and their order). It reads this kit, made by the same code ``pprl hash`` uses, so the
two encoders cannot disagree about *what* to hash, only about *how* to normalise, and
that is checked against the shared test vectors (``tests/vectors/``).
"""

from __future__ import annotations

from typing import Any

from linkage.encode.tokens import token_domain
from linkage.spec import (
    ROW_REF_COLUMN,
    Spec,
    attribute_column,
    fingerprint,
    token_column,
)

__all__ = ["KIT_FORMAT", "partner_kit"]

KIT_FORMAT = "pprl-kit/1"


def partner_kit(spec: Spec) -> dict[str, Any]:
    """The resolved spec as JSON-ready data (see the module docstring)."""
    if spec.encoding.bloom is not None:
        bloom: dict[str, Any] | None = spec.encoding.bloom.model_dump(mode="json")
    else:
        bloom = None
    identifiers = [
        {
            "name": i.name,
            "type": i.type,
            "headers": [i.source_column, *(i.aliases or ()), i.name],
            "formats": list(i.formats) if i.formats else None,
            "variants": list(i.active_variants),
        }
        for i in spec.identifiers
    ]
    attributes = []
    for a in spec.attributes:
        entry: dict[str, Any] = {"name": a.name, "kind": a.kind, "column": attribute_column(a.name)}
        if a.kind in ("age_band", "area"):
            entry["source"] = a.source
            if a.kind == "area":
                entry["level"] = a.level or "district"
        else:
            entry["headers"] = [a.source_column, *(a.aliases or ()), a.name]
        if a.kind == "age_band":
            entry["bands"] = list(a.age_bands)
            entry["labels"] = list(a.band_labels())
        if a.kind == "category":
            entry["values"] = list(a.values or ())
        if a.kind == "count":
            entry["max_value"] = a.max_value
        attributes.append(entry)
    columns: list[dict[str, Any]] = []
    for ident in spec.identifiers:
        for variant in ident.active_variants:
            field, domain_variant = token_domain(ident, variant)
            columns.append({"name": token_column(ident.name, variant), "kind": "token",
                            "identifier": ident.name, "variant": variant,
                            "domain": [field, domain_variant]})  # fmt: skip
    for a in spec.attributes:
        columns.append({"name": attribute_column(a.name), "kind": "int32" if a.kind == "count"
                        else "string", "attribute": a.name})  # fmt: skip
    return {
        "format": KIT_FORMAT,
        "spec_fingerprint": fingerprint(spec),
        "token_bytes": spec.token_bytes,
        "reference_date": spec.reference_date.isoformat(),
        "row_ref_column": ROW_REF_COLUMN,
        "identifiers": identifiers,
        "attributes": attributes,
        "columns": columns,
        "bloom": bloom,
    }
