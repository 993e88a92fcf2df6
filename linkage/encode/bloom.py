"""Per-field Bloom-filter encodings of names, for Dice similarity in the enclave.

A name is padded (``_NAME_``), split into n-grams, and each n-gram sets ``hashes`` bits
chosen by keyed double hashing: positions ``(h1 + i*h2) mod m`` with ``h1``/``h2`` from an
HMAC of the n-gram under a key derived from the secret and the field. The n-gram alphabet
is small, so each n-gram's bit mask is computed once and a name's filter is the OR of its
n-grams' masks.

Hardening (``BloomSpec.hardening``) against frequency and pattern-mining attacks; the
stored width is always ``bits``:
- ``balance``: build ``bits/2``, append its complement (every filter then has exactly
  ``bits/2`` ones) and apply a keyed permutation of the positions;
- ``xor_fold``: build ``2*bits`` and XOR the halves;
- ``none``: plain filter of ``bits``.
"""

from __future__ import annotations

import hashlib
import hmac
import random
from collections.abc import Sequence

import pyarrow as pa

from linkage.spec import BloomSpec

__all__ = ["BloomEncoder"]


class BloomEncoder:
    """Bloom-filter encoder for one field under one key."""

    def __init__(self, key: bytes, field: str, spec: BloomSpec) -> None:
        self.spec = spec
        self.width = spec.bits
        self._key = hmac.new(key, b"pprl/v1/bloom\x00" + field.encode(), hashlib.sha256).digest()
        if spec.hardening == "balance":
            self._build_bits = spec.bits // 2
        elif spec.hardening == "xor_fold":
            self._build_bits = spec.bits * 2
        else:
            self._build_bits = spec.bits
        self._masks: dict[str, tuple[int, int]] = {}
        self._upper = 0
        self._permutation: list[int] | None = None
        if spec.hardening == "balance":
            seed = int.from_bytes(hmac.new(self._key, b"permutation", hashlib.sha256).digest())
            order = list(range(spec.bits))
            random.Random(seed).shuffle(order)  # keyed, deterministic: not for secrecy of RNG
            self._permutation = order
            half = spec.bits // 2
            self._upper = self._permute(((1 << half) - 1) << half)
        self.type = pa.binary(spec.bits // 8)

    def _permute(self, bits: int) -> int:
        assert self._permutation is not None
        out = 0
        for src, dst in enumerate(self._permutation):
            if bits >> src & 1:
                out |= 1 << dst
        return out

    def _mask(self, gram: str) -> tuple[int, int]:
        """The gram's bits, and for ``balance`` the permuted image of its complement half."""
        masks = self._masks.get(gram)
        if masks is None:
            digest = hmac.new(self._key, gram.encode(), hashlib.sha256).digest()
            h1 = int.from_bytes(digest[:8])
            h2 = int.from_bytes(digest[8:16]) | 1
            m = self._build_bits
            mask = 0
            for i in range(self.spec.hashes):
                mask |= 1 << ((h1 + i * h2) % m)
            if self._permutation is not None:
                # a bit permutation commutes with OR, so permute each gram's mask once
                masks = (self._permute(mask), self._permute(mask << m))
            else:
                masks = (mask, 0)
            self._masks[gram] = masks
        return masks

    def encode(self, name: str) -> bytes:
        """The filter of one normalised name, ``bits/8`` bytes."""
        n = self.spec.ngram
        padded = f"_{name.replace(' ', '')}_"
        low = high = 0
        for i in range(max(1, len(padded) - n + 1)):
            lo, hi = self._mask(padded[i : i + n])
            low |= lo
            high |= hi
        if self.spec.hardening == "xor_fold":
            half = self.spec.bits
            bits = (low >> half) ^ (low & ((1 << half) - 1))
        elif self._permutation is not None:
            # filter = P(bits) | P(complement of bits, shifted to the upper half)
            bits = low | (self._upper & ~high)
        else:
            bits = low
        return bits.to_bytes(self.spec.bits // 8, "big")

    def array(self, names: Sequence[str | None]) -> pa.FixedSizeBinaryArray:
        """Filters of many names (``None`` stays null)."""
        values = [None if name is None else self.encode(name) for name in names]
        return pa.array(values, type=self.type)
