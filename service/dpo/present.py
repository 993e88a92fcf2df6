"""How the DPO pages put things into words: audit details, policy, spec, retention, runs.

Jinja filters and globals, installed on the DPO templates (and so on the analyst pages
that share their layout). Nothing here reads the database.
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Mapping
from datetime import UTC, datetime, timedelta
from typing import Any

from jinja2 import Environment

from service.projects.service import project_rules_words
from service.results.tables import policy_in_words

__all__ = ["install", "member_organisations"]

#: audit detail keys shown under a plainer name
_LABELS = {
    "to": "to",
    "figures_count": "figures",
    "released_sha256": "release sha256",
    "reason": "reason",
    "params": "settings",
    "format": "format",
}
_SHORT = 12  # characters of a digest shown inline


def _aware(moment: datetime) -> datetime:
    return moment if moment.tzinfo else moment.replace(tzinfo=UTC)


def _value(key: str, value: Any) -> str:
    if isinstance(value, Mapping):
        return (
            ", ".join(f"{k.replace('_', ' ')} {_value(k, v)}" for k, v in value.items()) or "none"
        )
    if isinstance(value, list | tuple):
        return f"{len(value)} items" if len(value) > 6 else ", ".join(_value(key, v) for v in value)
    if value is None:
        return "—"
    text = str(value)
    if key.endswith("sha256") or key.endswith("hash") or _opaque(text):
        return text[:_SHORT] + "…" if len(text) > _SHORT else text
    return text


def _opaque(text: str) -> bool:
    """Digests, fingerprints, keys and ids: long and without spaces (shown shortened)."""
    return len(text) > 24 and " " not in text


def detail_items(details: Mapping[str, Any]) -> list[tuple[str, str]]:
    """An event's details as (label, plain text) pairs: no JSON, no escapes."""
    items = []
    for key, value in details.items():
        if key == "figures" and isinstance(value, list):
            continue  # shown as a count with the full list one click away
        items.append((_LABELS.get(key, key.replace("_", " ")), _value(key, value)))
    return items


def policy_words(disclosure_json: str | Mapping[str, Any]) -> list[str]:
    """A project's disclosure policy as sentences."""
    policy = json.loads(disclosure_json) if isinstance(disclosure_json, str) else disclosure_json
    return policy_in_words(policy or {})


def spec_summary(spec_json: str) -> dict[str, Any]:
    """What a spec processes: identifiers (name and type) and attributes (name and kind)."""
    spec = json.loads(spec_json)
    return {
        "version": spec.get("version"),
        "name": spec.get("name"),
        "identifiers": [(i.get("name"), i.get("type")) for i in spec.get("identifiers", [])],
        "attributes": [(a.get("name"), a.get("kind")) for a in spec.get("attributes", [])],
        "bloom": bool((spec.get("encoding") or {}).get("bloom")),
    }


def expiry(received_at: datetime, retention_days: int) -> datetime:
    """When a sealed extract is purged: received plus the project's retention."""
    return _aware(received_at) + timedelta(days=retention_days)


def used_by(run: Any, submissions: Iterable[Any]) -> list[str]:
    """'partner vN' of each submission that was current when ``run`` started."""
    started = _aware(getattr(run, "started_at", None) or run.created_at)
    current: dict[str, int] = {}
    for s in sorted(submissions, key=lambda s: (s.partner, s.version)):
        if _aware(s.received_at) > started or getattr(s, "status", "accepted") == "rejected":
            continue
        if s.superseded_at is not None and _aware(s.superseded_at) <= started:
            continue
        current[s.partner] = s.version
    return [f"{p} v{v}" for p, v in current.items()]


def member_organisations(
    members: Iterable[Any], partners: Mapping[str, str]
) -> list[dict[str, Any]]:
    """A project's members as a DPO thinks of them: partner tokens under their
    organisation (one entry however many tokens it holds, with the count), everyone
    else by name. ``partners``: organisation id -> name."""
    out: dict[tuple[str, str], dict[str, Any]] = {}
    for m in members:
        org = partners.get(m.partner_id or "") if m.role == "partner" else None
        key = (org or m.name, m.role)
        entry = out.setdefault(key, {"name": key[0], "role": m.role, "tokens": 0})
        entry["tokens"] += 1
    return sorted(out.values(), key=lambda e: (e["role"], e["name"].lower()))


def install(env: Environment) -> None:
    """Make the helpers available to the templates of ``env``."""
    env.filters["detail_items"] = detail_items
    env.filters["policy_words"] = policy_words
    env.filters["run_rules_words"] = project_rules_words  # service.projects.service
    env.filters["spec_summary"] = spec_summary
    env.globals["expiry"] = expiry
    env.globals["used_by"] = used_by
