"""Enclave-side matching: Splink comparisons from tokens, the backend, and ``link``."""

from linkage.match.backend import Backend
from linkage.match.comparisons import comparisons_for
from linkage.match.link import (
    LINK_STRENGTH,
    PARTNER,
    PERSON,
    PERSON_LOOSE,
    PERSON_STRICT,
    LinkResult,
    link,
)

__all__ = [
    "LINK_STRENGTH",
    "PARTNER",
    "PERSON",
    "PERSON_LOOSE",
    "PERSON_STRICT",
    "Backend",
    "LinkResult",
    "comparisons_for",
    "link",
]
