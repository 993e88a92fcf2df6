"""Enclave-side matching: Splink comparisons from tokens, the backend, and ``link``."""

from linkage.match.backend import Backend
from linkage.match.comparisons import comparisons_for
from linkage.match.link import PARTNER, PERSON, LinkResult, link

__all__ = ["PARTNER", "PERSON", "Backend", "LinkResult", "comparisons_for", "link"]
