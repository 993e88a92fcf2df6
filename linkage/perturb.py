"""The cell key method's noise: perturbation tables and the keys that index them.

ONS protected Census 2021 tables with a cell key method: every record carries a random
key, a cell's key is derived from the keys of the records in it, and a perturbation
table (ptable) maps (cell key) to the noise added, so the same cell always gets the same
noise. Here:

- **The ptable** is a discrete Laplace distribution with scale ``sensitivity/epsilon``,
  cut off at ``max_perturbation * sensitivity``: moving one person in or out of a cell
  changes the probability of any released value by at most a factor of exp(epsilon),
  except on the cut-off's tail (probability ``delta``, about exp(-epsilon * D)). Both
  numbers are computed from the table as realised (:meth:`Ptable.bound`), not assumed.
- **A cell's key** is an HMAC, under the run's secret, of the cell's population
  fingerprint (the XOR of its people's keys, see :func:`person_keys`): the same people
  get the same noise in every table of a release (``multi.total`` and
  ``persons.at_least_2`` agree), and different people independent noise.
- **The run's secret** (:func:`run_secret`) is an HMAC, under the enclave's secret, of
  the run's parameters, its inputs and its exact figures. A run repeated on the same
  data with the same parameters releases the same figures, so averaging repeated runs
  learns nothing; any change (one record, a threshold) draws fresh noise everywhere.
  Keys that stayed fixed across changes would be worse: a partner who adds the target
  would see a cell change exactly when the target is in it.
"""

from __future__ import annotations

import bisect
import hashlib
import hmac
import json
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from functools import cache
from typing import Any

import numpy as np

__all__ = ["Ptable", "cell_key", "person_keys", "ptable", "run_secret", "xor_fold"]

_BITS = 53  # a float64 holds this many uniform bits exactly
_MASK64 = (1 << 64) - 1


@dataclass(frozen=True, eq=False)  # hashed by identity: tables are cached, one per setting
class Ptable:
    """Noise ``values[i]`` for a cell key whose uniform ``u`` falls in bucket ``i``."""

    epsilon: float
    max_perturbation: int
    sensitivity: int
    values: np.ndarray = field(repr=False)
    upper: np.ndarray = field(repr=False)  # cumulative bucket ends, integers out of 2**53

    @property
    def probabilities(self) -> np.ndarray:
        """The realised probability of each value (exact multiples of 2**-53)."""
        return np.diff(np.concatenate(([0], self.upper))).astype(np.float64) / 2.0**_BITS

    @property
    def variance(self) -> float:
        """Variance of the noise."""
        p = self.probabilities
        return float(np.sum(p * self.values.astype(np.float64) ** 2))

    def noise(self, key: int) -> int:
        """The noise for a 64-bit cell key (its top 53 bits as a uniform number)."""
        u = (key & _MASK64) >> (64 - _BITS)
        values, upper = _lists(self)
        return values[bisect.bisect_right(upper, u)]

    def bound(self) -> tuple[float, float]:
        """(epsilon, delta) of the realised table for one person in or out of a cell.

        Shifting the true value by ``c`` in ``1..sensitivity`` shifts the noise's
        support: epsilon is the largest log-ratio of probabilities where both are
        positive, delta the largest mass on values only one side can produce.
        """
        return _bound(self)


@cache
def _lists(table: Ptable) -> tuple[list[int], list[int]]:
    return table.values.tolist(), table.upper.tolist()


@cache
def _bound(table: Ptable) -> tuple[float, float]:
    p = table.probabilities
    worst_eps, worst_delta = 0.0, 0.0
    for shift in range(1, table.sensitivity + 1):
        a = np.concatenate((p, np.zeros(shift)))
        b = np.concatenate((np.zeros(shift), p))
        both = (a > 0) & (b > 0)
        ratio = np.abs(np.log(a[both]) - np.log(b[both]))
        worst_eps = max(worst_eps, float(ratio.max(initial=0.0)))
        worst_delta = max(worst_delta, float(a[~both].sum()), float(b[~both].sum()))
    return worst_eps, worst_delta


@cache
def ptable(epsilon: float, max_perturbation: int, sensitivity: int = 1) -> Ptable:
    """A discrete Laplace table with scale ``sensitivity/epsilon``, cut off at
    ``max_perturbation * sensitivity`` (or sooner where its tail falls below 2**-40) and
    quantised to 2**-53."""
    if epsilon <= 0 or max_perturbation < 1 or sensitivity < 1:
        raise ValueError("a ptable needs epsilon > 0, max_perturbation >= 1, sensitivity >= 1")
    reach = max_perturbation * sensitivity
    values = np.arange(-reach, reach + 1, dtype=np.int64)
    weights = np.exp(-np.abs(values) * (epsilon / sensitivity))
    # values rarer than 2**-40 are dropped: quantised to 2**-53 their ratios would drift
    # from exp(epsilon); what is left stays within 2**-13 of it
    keep = weights / weights.sum() >= 2.0**-40
    values, weights = values[keep], weights[keep]
    # each value's mass as a whole number of 2**-53 (rounded once, not accumulated), the
    # rounding remainder given to the most likely value (0)
    mass = np.round(weights / weights.sum() * 2.0**_BITS).astype(np.int64)
    mass[len(mass) // 2] += (1 << _BITS) - int(mass.sum())
    return Ptable(epsilon, max_perturbation, sensitivity, values, np.cumsum(mass))


def _canonical(value: Any) -> bytes:
    return json.dumps(value, sort_keys=True, separators=(",", ":"), default=str).encode()


def run_secret(
    secret: bytes,
    *,
    parameters: Mapping[str, Any] | None,
    inputs: Sequence[str],
    exact: Mapping[str, Any],
) -> bytes:
    """The key of one run's noise: the same exactly when secret, parameters, inputs and
    exact figures are all the same."""
    digest = hashlib.sha256(_canonical(exact)).digest()
    message = (
        b"pprl/cell-key/run/v1\x00"
        + _canonical({"parameters": dict(parameters or {}), "inputs": sorted(inputs)})
        + b"\x00"
        + digest
    )
    return hmac.new(secret, message, hashlib.sha256).digest()


def cell_key(run: bytes, purpose: bytes, fingerprint: int) -> int:
    """A cell's 64-bit key for ``purpose`` (b"count", b"sum") from its population."""
    message = purpose + b"\x00" + (fingerprint & _MASK64).to_bytes(8, "big")
    return int.from_bytes(hmac.new(run, message, hashlib.sha256).digest()[:8], "big")


def person_keys(person_ids: np.ndarray) -> np.ndarray:
    """Each person's 64-bit key from their id in the run (splitmix64, uint64).

    Not secret and not stable across runs, and neither needs to be: a cell's key is an
    HMAC of its fingerprint under the run's secret, which changes whenever the data do.
    The keys only make the same people in two cells of one release share their noise.
    """
    z = person_ids.astype(np.uint64) + np.uint64(0x9E3779B97F4A7C15)
    with np.errstate(over="ignore"):
        z = (z ^ (z >> np.uint64(30))) * np.uint64(0xBF58476D1CE4E5B9)
        z = (z ^ (z >> np.uint64(27))) * np.uint64(0x94D049BB133111EB)
    return z ^ (z >> np.uint64(31))


def xor_fold(keys: np.ndarray) -> int:
    """A population's fingerprint: the XOR of its people's keys (0 for nobody)."""
    return int(np.bitwise_xor.reduce(keys, initial=np.uint64(0))) if len(keys) else 0
