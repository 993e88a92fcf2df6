"""A hard synthetic linkage set: the things real extracts do that simple generators don't.

Five partners of very different size (about 0.8% to 80% of the population) and field
coverage, US-style fields (5-digit ZIP code, 9-digit SSN-like id) and:

- households sharing address and surname, with twins (same date of birth and surname,
  different forenames) and ids copied from one member to another;
- married-name changes (an older surname in some extracts), forename and surname
  swapped, nicknames, typos, one-digit typos and adjacent transpositions in the id;
- dates written ISO, US (mm/dd/yyyy), yyyymmdd and mmddyyyy by different partners, with
  day and month swapped or a digit wrong in some;
- one ZIP code (a hostel) held by over half of one partner's records.

``person_id`` is the truth; :data:`HARD_SPEC` is a spec written from the README's
defaults plus the partners' declared date formats.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import date, timedelta
from typing import Any

import numpy as np
import pyarrow as pa

from linkage.synthetic import _names, _nickname_forms, _typo

__all__ = ["HARD_SPEC", "generate_hard_partners"]

HARD_SPEC: dict[str, Any] = {
    "version": "1.0",
    "name": "hard-synthetic",
    "reference_date": "2026-04-01",
    "identifiers": [
        {"name": "forename", "type": "forename"},
        {"name": "surname", "type": "surname"},
        {"name": "dob", "type": "date", "column": "date_of_birth",
         "formats": ["%Y-%m-%d", "%m/%d/%Y", "%Y%m%d", "%m%d%Y"]},
        {"name": "sex", "type": "sex"},
        {"name": "zip", "type": "postcode"},
        {"name": "ssn", "type": "id"},
    ],
    "attributes": [
        {"name": "age_band", "kind": "age_band", "source": "dob"},
        {"name": "area", "kind": "area", "source": "zip"},
    ],
    "matching": {"threshold": "balanced"},
}  # fmt: skip


@dataclass(frozen=True)
class _Partner:
    name: str
    coverage: float
    date_format: str
    ssn_present: float  # share of records with an id
    dob_missing: float
    sex_missing: float
    duplicate: float
    hostel: float = 0.0  # share of records given the one shared ZIP code


_PARTNERS = (
    _Partner("clinic", 0.80, "%Y-%m-%d", 0.95, 0.01, 0.01, 0.04),
    _Partner("benefits", 0.45, "%m/%d/%Y", 0.98, 0.02, 0.30, 0.02),
    _Partner("shelter", 0.25, "%m%d%Y", 0.30, 0.10, 0.05, 0.06, hostel=0.55),
    _Partner("courts", 0.10, "%Y%m%d", 0.60, 0.03, 0.00, 0.03),
    _Partner("outreach", 0.008, "%m/%d/%Y", 0.10, 0.25, 0.20, 0.00),
)


@dataclass
class _People:
    forename: np.ndarray
    surname: np.ndarray
    maiden: np.ndarray  # surname at birth ("" when never changed)
    dob: np.ndarray  # days since 1970-01-01
    sex: np.ndarray
    zip: np.ndarray
    ssn: np.ndarray
    household: np.ndarray


def _people(rng: np.random.Generator, n: int, reference: date) -> _People:
    female, male, surnames, weights = _names()
    # households of 1-5 sharing ZIP and (mostly) surname
    sizes = rng.choice([1, 2, 3, 4, 5], size=n, p=[0.35, 0.3, 0.18, 0.12, 0.05])
    household = np.repeat(np.arange(n), sizes)[:n]
    n_house = int(household.max()) + 1
    house_surname = rng.choice(np.array(surnames), size=n_house, p=weights)
    house_zip = np.char.zfill(rng.integers(10000, 99999, size=n_house).astype(str), 5)
    sex = rng.choice(np.array(["F", "M"]), size=n)
    forename = np.where(
        sex == "F", rng.choice(np.array(female), size=n), rng.choice(np.array(male), size=n)
    ).astype(object)
    surname = house_surname[household].astype(object)
    own = rng.random(n) < 0.15  # lodgers, step-families: a household member's own surname
    surname[own] = rng.choice(np.array(surnames), size=int(own.sum()), p=weights)
    ref_days = (reference - date(1970, 1, 1)).days
    ages = np.clip(rng.gamma(5.0, 8.0, size=n), 0, 99)
    dob = ref_days - (ages * 365.25).astype(np.int64) - rng.integers(0, 365, size=n)
    # twins: the next member of the household shares date of birth and surname
    twin = np.flatnonzero((rng.random(n - 1) < 0.03) & (household[1:] == household[:-1])) + 1
    dob[twin] = dob[twin - 1]
    surname[twin] = surname[twin - 1]
    maiden = np.full(n, "", dtype=object)
    married = (sex == "F") & (ages > 25) & (rng.random(n) < 0.25)
    maiden[married] = rng.choice(np.array(surnames), size=int(married.sum()), p=weights)
    ssn = (100_000_000 + rng.choice(800_000_000, size=n, replace=False)).astype(str)
    return _People(forename.astype(str), surname.astype(str), maiden, dob, sex,
                   house_zip[household], ssn, household)  # fmt: skip


def _id_typo(rng: np.random.Generator, value: str) -> str:
    i = int(rng.integers(0, len(value) - 1))
    if rng.random() < 0.8:  # one digit substituted
        digit = str((int(value[i]) + int(rng.integers(1, 10))) % 10)
        return value[:i] + digit + value[i + 1 :]
    return value[:i] + value[i + 1] + value[i] + value[i + 2 :]  # adjacent transposition


def _date_text(rng: np.random.Generator, days: int, fmt: str) -> str:
    d = date(1970, 1, 1) + timedelta(days=days)
    roll = rng.random()
    if roll < 0.02 and d.day <= 12 and d.day != d.month:
        d = d.replace(day=d.month, month=d.day)  # day and month swapped
    elif roll < 0.035:
        d = d.replace(day=max(1, min(28, d.day + int(rng.choice([-1, 1])))))
    elif roll < 0.045 and d.day > 12:
        # impossible as written (month > 12) but right when swapped back
        return d.strftime(fmt.replace("%m", "%Q").replace("%d", "%m").replace("%Q", "%d"))
    return d.strftime(fmt)


def _partner(
    rng: np.random.Generator, people: _People, spec: _Partner, hostel_zip: str
) -> pa.Table:
    n_pop = len(people.sex)
    seen = np.flatnonzero(rng.random(n_pop) < spec.coverage)
    dup = seen[rng.random(len(seen)) < spec.duplicate]
    idx = np.sort(np.concatenate([seen, dup]))
    forms = _nickname_forms()
    rows: dict[str, list[str | None]] = {k: [] for k in
        ("forename", "surname", "date_of_birth", "sex", "zip", "ssn")}  # fmt: skip
    for i in idx:
        fore, sur = str(people.forename[i]), str(people.surname[i])
        if people.maiden[i] and rng.random() < 0.35:
            sur = str(people.maiden[i])  # recorded before (or without) the name change
        r = rng.random()
        if r < 0.05 and forms.get(fore.title()):
            options = forms[fore.title()]
            fore = options[int(rng.integers(0, len(options)))].upper()
        elif r < 0.09:
            fore = _typo(rng, fore)
        elif r < 0.12:
            sur = _typo(rng, sur)
        if rng.random() < 0.02:
            fore, sur = sur, fore
        true_ssn = str(people.ssn[i])
        r = rng.random()
        if r < 0.03:
            true_ssn = _id_typo(rng, true_ssn)
        elif r < 0.045:
            # a household member's id (a parent's, on a child's record)
            mates = np.flatnonzero(people.household == people.household[i])
            true_ssn = str(people.ssn[int(rng.choice(mates))])
        ssn: str | None = true_ssn
        if rng.random() > spec.ssn_present:
            ssn = None
        dob: str | None = _date_text(rng, int(people.dob[i]), spec.date_format)
        if rng.random() < spec.dob_missing:
            dob = None
        zip_code: str | None = str(people.zip[i])
        if rng.random() < spec.hostel:
            zip_code = hostel_zip
        elif rng.random() < 0.08:
            zip_code = str(int(rng.integers(10000, 99999)))  # moved
        sex: str | None = str(people.sex[i])
        if rng.random() < spec.sex_missing:
            sex = None
        for key, value in (("forename", fore), ("surname", sur), ("date_of_birth", dob),
                           ("sex", sex), ("zip", zip_code), ("ssn", ssn)):  # fmt: skip
            rows[key].append(value)
    table = pa.table({"person_id": pa.array(idx, pa.int64()),
                      **{k: pa.array(v, pa.string()) for k, v in rows.items()}})  # fmt: skip
    return table.take(pa.array(rng.permutation(table.num_rows)))


def generate_hard_partners(
    population: int = 20_000, *, seed: int = 2026, reference: date = date(2026, 4, 1)
) -> dict[str, pa.Table]:
    """Five partner extracts (text columns, ``person_id`` the truth) of the hard set."""
    rng = np.random.default_rng(seed)
    people = _people(rng, population, reference)
    hostel_zip = str(int(rng.integers(10000, 99999)))
    return {p.name: _partner(rng, people, p, hostel_zip) for p in _PARTNERS}
