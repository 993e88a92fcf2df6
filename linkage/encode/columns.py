"""Which column of a partner's file feeds which spec field, and the mapping file that
remembers it from one month's extract to the next.

Headers are matched ignoring case, spaces and punctuation (``NHS_NUMBER``, ``NHS Number``
and ``nhs-number`` are one column), against, in order: the partner's own mapping
(``--column FIELD=COLUMN`` or ``--mapping FILE``), the spec's ``column``, its ``aliases``,
and the field name. A mapping file is JSON written by ``--save-mapping``::

    {"pprl_mapping": 1, "columns": {"nhs_number": "NHS No.", "date_of_birth": "DOB"},
     "read": {"encoding": "cp1252", "delimiter": "semicolon", "sheet": null}}
"""

from __future__ import annotations

import json
import os
import re
import tempfile
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

from linkage.errors import InputError
from linkage.spec import Spec

__all__ = [
    "ColumnMapping",
    "header_key",
    "load_mapping",
    "needed_fields",
    "resolve_columns",
    "save_mapping",
]

_NOT_ALNUM = re.compile(r"[^0-9a-z]+")
_MAPPING_VERSION = 1


def header_key(name: str) -> str:
    """How headers are compared: lower case, letters and digits only."""
    return _NOT_ALNUM.sub("", name.casefold())


def needed_fields(spec: Spec) -> dict[str, list[str]]:
    """Every field read from the input -> the header names it may have, in order."""
    fields: dict[str, list[str]] = {}
    for ident in spec.identifiers:
        fields[ident.name] = [ident.source_column, *(ident.aliases or ()), ident.name]
    for attr in spec.attributes:
        if attr.kind in ("category", "count"):
            fields[attr.name] = [attr.source_column, *(attr.aliases or ()), attr.name]
    return fields


def resolve_columns(
    spec: Spec, header: Sequence[str], origin: str, mapping: Mapping[str, str] | None = None
) -> dict[str, str]:
    """Field -> the header name it is read from; one clear :class:`InputError` otherwise."""
    mapping = dict(mapping or {})
    fields = needed_fields(spec)
    for name in mapping:
        if name not in fields:
            raise InputError(
                f"column mapping {name}=...: the spec has no identifier or category/count "
                f"attribute called {name!r} (expected one of: {', '.join(fields)})"
            )
    by_key: dict[str, list[str]] = {}
    for column in header:
        if column:
            by_key.setdefault(header_key(column), []).append(column)
    resolved: dict[str, str] = {}
    missing: list[tuple[str, list[str]]] = []
    for name, candidates in fields.items():
        wanted = [mapping[name]] if name in mapping else candidates
        found = None
        for candidate in wanted:
            hits = by_key.get(header_key(candidate), [])
            if len(hits) > 1:
                raise InputError(
                    f"{origin}: row 1: columns {', '.join(repr(h) for h in hits)} both match "
                    f"{name}; rename one, or map it with --column {name}=COLUMN"
                )
            if hits:
                found = hits[0]
                break
        if found is None:
            missing.append((name, wanted))
        else:
            resolved[name] = found
    if missing:
        listed = "; ".join(
            f"{name} (looked for {', '.join(repr(w) for w in dict.fromkeys(wanted))})"
            for name, wanted in missing
        )
        found_cols = ", ".join(repr(c) for c in list(header)[:30]) or "none"
        example = missing[0][0]
        raise InputError(
            f"{origin}: row 1: no column for {listed}; columns found: {found_cols}. "
            f"Map it with --column {example}=YOUR_COLUMN (add --save-mapping FILE to keep "
            "the mapping for next time)"
        )
    return resolved


class ColumnMapping:
    """A saved column mapping and read options."""

    def __init__(self, columns: dict[str, str], read: dict[str, str | None]) -> None:
        self.columns = columns
        self.read = read


def load_mapping(path: str | Path) -> ColumnMapping:
    """Read a mapping file written by :func:`save_mapping`."""
    p = Path(path)
    try:
        data: Any = json.loads(p.read_text("utf-8"))
    except FileNotFoundError:
        raise InputError(f"{p}: mapping file not found") from None
    except (OSError, UnicodeDecodeError, json.JSONDecodeError):
        raise InputError(
            f"{p}: not a mapping file (expected the JSON written by --save-mapping)"
        ) from None
    if not isinstance(data, dict) or data.get("pprl_mapping") != _MAPPING_VERSION:
        raise InputError(f"{p}: not a mapping file (expected the JSON written by --save-mapping)")
    columns = data.get("columns")
    read = data.get("read") or {}
    if not isinstance(columns, dict) or not all(
        isinstance(k, str) and isinstance(v, str) for k, v in columns.items()
    ):
        raise InputError(f"{p}: 'columns' must map spec fields to column names")
    if not isinstance(read, dict) or not all(
        k in ("encoding", "delimiter", "sheet") and (v is None or isinstance(v, str))
        for k, v in read.items()
    ):
        raise InputError(f"{p}: 'read' may hold only encoding, delimiter and sheet")
    return ColumnMapping(dict(columns), dict(read))


def save_mapping(path: str | Path, columns: Mapping[str, str], read: Mapping[str, Any]) -> None:
    """Write the mapping (atomically) so next month's run needs only ``--mapping FILE``."""
    p = Path(path)
    directory = p.parent if str(p.parent) else Path(".")
    if not directory.is_dir():
        raise InputError(f"{directory}: directory for the mapping file does not exist")
    payload = {
        "pprl_mapping": _MAPPING_VERSION,
        "columns": dict(columns),
        "read": {k: read.get(k) for k in ("encoding", "delimiter", "sheet")},
    }
    fd, tmp = tempfile.mkstemp(prefix=f".{p.name}.", suffix=".partial", dir=directory)
    try:
        with os.fdopen(fd, "w", encoding="utf-8") as fh:
            json.dump(payload, fh, indent=2, sort_keys=True)
            fh.write("\n")
        os.replace(tmp, p)
    finally:
        Path(tmp).unlink(missing_ok=True)
