"""Records into people from scored pairs, without chaining strangers together.

Plain connected components joins A and C whenever A-B and B-C pass the threshold, even
when nothing links A to C: one mistaken pair merges two people, and a run of them (a
household sharing an address, surname and sometimes an id) makes one "person" of many.
Here links are taken strongest first, and two groups of records are merged only when
enough of the pairs between them were scored as likely (at the looser threshold the
pairs were predicted at) -- average-linkage support, the rule hierarchical clustering
uses. Two single records merge on their one link, as in connected components; only
merges into groups of three or more are checked, so the cost stays small.

Both are computed on the scored pairs in memory (SciPy for components), inside the
enclave; nothing here leaves it.
"""

from __future__ import annotations

import numpy as np
from scipy.sparse import coo_matrix
from scipy.sparse.csgraph import connected_components as _components

__all__ = ["balanced_threshold", "cautious_clusters", "connected_components"]

#: share of the cross pairs between two groups that must be scored pairs to merge them
MIN_SUPPORT = 0.5

IntArray = np.ndarray


def connected_components(n: int, left: IntArray, right: IntArray, keep: IntArray) -> IntArray:
    """Component label per node 0..n-1 over the edges where ``keep`` is true."""
    graph = coo_matrix(
        (np.ones(int(keep.sum()), dtype=np.int8), (left[keep], right[keep])), shape=(n, n)
    )
    _, labels = _components(graph, directed=False)
    return np.asarray(labels, dtype=np.int64)


def cautious_clusters(
    n: int,
    left: IntArray,
    right: IntArray,
    weight: np.ndarray,
    threshold: float,
    min_support: float = MIN_SUPPORT,
) -> tuple[IntArray, int]:
    """(cluster label per node, merges refused) for links with ``weight >= threshold``.

    All given edges (also those under ``threshold``) count as support between groups.
    """
    keep = weight >= threshold
    labels = connected_components(n, left, right, keep)
    sizes = np.bincount(labels, minlength=n)
    # components of one or two records cannot chain: only larger ones are re-examined
    big = sizes[labels] >= 3
    if not big.any():
        return labels, 0
    in_big = big[left] & big[right]
    el, er, ew = left[in_big], right[in_big], weight[in_big]
    neighbours: dict[int, set[int]] = {}
    for a, b in zip(el.tolist(), er.tolist(), strict=True):
        neighbours.setdefault(a, set()).add(b)
        neighbours.setdefault(b, set()).add(a)
    parent: dict[int, int] = {}
    members: dict[int, list[int]] = {}

    def find(x: int) -> int:
        root = x
        while parent.get(root, root) != root:
            root = parent[root]
        while parent.get(x, x) != root:  # path compression
            parent[x], x = root, parent[x]
        return root

    refused = 0
    order = np.argsort(-ew, kind="stable")
    strong = ew[order] >= threshold
    for a, b in zip(el[order][strong].tolist(), er[order][strong].tolist(), strict=True):
        ra, rb = find(a), find(b)
        if ra == rb:
            continue
        ma, mb = members.get(ra, [ra]), members.get(rb, [rb])
        if len(ma) + len(mb) > 2:
            small, other = (ma, rb) if len(ma) <= len(mb) else (mb, ra)
            support = sum(1 for x in small for y in neighbours.get(x, ()) if find(y) == other)
            if support < min_support * len(ma) * len(mb):
                refused += 1
                continue
        if len(ma) < len(mb):
            ra, rb, ma, mb = rb, ra, mb, ma
        parent[rb] = ra
        members[ra] = ma + mb
        members.pop(rb, None)
    # relabel: nodes of re-examined components get their group's root, offset past
    # the component labels so the two label sets cannot collide
    out = labels.copy()
    nodes = np.flatnonzero(big)
    out[nodes] = n + np.fromiter((find(int(x)) for x in nodes), dtype=np.int64, count=len(nodes))
    return out, refused


def balanced_threshold(weight: np.ndarray, low: float, high: float) -> float:
    """The match probability at which the model expects as many false links as missed
    ones among the scored pairs, kept within ``[low, high]``.

    Linking every pair of probability ``p >= t`` makes, by the model's own account,
    sum(1 - p) false links above ``t`` and misses sum(p) matches below it. Where the
    two are equal the number of linked pairs is the expected number of matching pairs:
    a count built on the links is then not biased down by the uncertain pairs a strict
    threshold leaves out (nor up by a loose one). ``weight``: match weights (log2 odds)
    of the scored pairs; pairs not scored count as certain non-matches.
    """
    if len(weight) == 0:
        return high
    w = np.sort(np.asarray(weight, dtype=np.float64))[::-1]
    p = 1.0 / (1.0 + np.exp2(-w))
    false_links = np.cumsum(1.0 - p)  # linking the k+1 most likely pairs
    missed = p.sum() - np.cumsum(p)  # ... leaves these matches out
    k = min(int(np.searchsorted(false_links - missed, 0.0)), len(p) - 1)  # first false >= missed
    # The threshold goes halfway to the next lower weight, never onto a pair's own: a pair
    # sitting exactly on it would be linked or not by the last bit of its weight, which
    # differs between backends (DuckDB and Spark sum the same logs in other orders).
    # Weights within _TIE of each other are one value (pairs of the same comparison levels).
    lower = np.flatnonzero(w[k:] < w[k] - _TIE)
    cut = (w[k] + w[k + int(lower[0])]) / 2 if len(lower) else w[k] - 1.0
    t = float(1.0 / (1.0 + np.exp2(-cut)))
    return min(max(t, low), high)


_TIE = 1e-6  # match weights (bits) closer than this are the same weight
