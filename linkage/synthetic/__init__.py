"""Synthetic UK partner extracts with known truth, for the demo, the tests and benchmarks.

A population of people is drawn once; each partner (council housing, adult social care,
A&E, police...) sees a subset of them, some more than once (a second registration), with
the recording habits of that kind of service: missing NHS numbers, nicknames, typos,
swapped day and month, a previous address, different date and postcode formats. The
``person_id`` column is the ground truth; it is never part of a hashed extract.

Everything is generated here from shipped name lists and a seed: nothing is downloaded.
"""

from __future__ import annotations

import csv
from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import date, timedelta
from functools import cache
from importlib import resources

import numpy as np
import pyarrow as pa

__all__ = ["DEMO_PARTNERS", "PartnerProfile", "generate_partners", "valid_nhs_numbers"]

NEEDS = (
    "housing", "mental_health", "substance_misuse", "domestic_abuse",
    "physical_health", "social_care", "offending", "other",
)  # fmt: skip

# Postcode districts of one made-up-but-valid-looking council area (Leeds-style LS codes).
_DISTRICTS = tuple(f"LS{n}" for n in range(1, 30))
_UNIT_LETTERS = "ABDEFGHJLNPQRSTUWXYZ"


@dataclass(frozen=True)
class PartnerProfile:
    """How one kind of service sees and records the people it serves."""

    name: str
    coverage: float  # share of the population this partner has a record of
    nhs_missing: float = 0.1
    name_error: float = 0.05  # typo in forename or surname
    nickname: float = 0.05  # forename recorded as a nickname / short form
    dob_error: float = 0.03  # day/month swapped or one digit wrong
    dob_missing: float = 0.02
    moved: float = 0.1  # an older or newer address than other services hold
    postcode_missing: float = 0.03
    duplicate: float = 0.05  # a second registration of the same person
    date_format: str = "%Y-%m-%d"
    upper_case: bool = False
    needs: Sequence[float] = field(default=(0.4, 0.1, 0.05, 0.05, 0.05, 0.2, 0.05, 0.1))
    mean_contacts: float = 3.0


DEMO_PARTNERS: tuple[PartnerProfile, ...] = (
    PartnerProfile("housing", coverage=0.35, nhs_missing=0.7, date_format="%d/%m/%Y",
                   needs=(0.7, 0.05, 0.05, 0.05, 0.0, 0.05, 0.0, 0.1), mean_contacts=4),
    PartnerProfile("social_care", coverage=0.25, nhs_missing=0.15, upper_case=True,
                   needs=(0.05, 0.15, 0.05, 0.05, 0.2, 0.45, 0.0, 0.05), mean_contacts=6),
    PartnerProfile("a_and_e", coverage=0.4, nhs_missing=0.05, moved=0.15, date_format="%Y%m%d",
                   needs=(0.0, 0.2, 0.15, 0.05, 0.55, 0.0, 0.0, 0.05), mean_contacts=3),
    PartnerProfile("police", coverage=0.2, nhs_missing=0.95, name_error=0.08, nickname=0.12,
                   dob_error=0.05, date_format="%d-%m-%y",
                   needs=(0.0, 0.15, 0.2, 0.25, 0.0, 0.0, 0.35, 0.05), mean_contacts=2),
)  # fmt: skip


@cache
def _names() -> tuple[tuple[str, ...], tuple[str, ...], tuple[str, ...], np.ndarray]:
    root = resources.files("linkage.synthetic")
    female = tuple(root.joinpath("forenames_female.txt").read_text("utf-8").split())
    male = tuple(root.joinpath("forenames_male.txt").read_text("utf-8").split())
    rows = list(csv.reader(root.joinpath("surnames.csv").read_text("utf-8").splitlines()))
    surnames = tuple(r[0] for r in rows)
    weights = np.array([float(r[1]) for r in rows])
    return female, male, surnames, weights / weights.sum()


@cache
def _nickname_forms() -> dict[str, tuple[str, ...]]:
    text = resources.files("linkage.normalise").joinpath("nicknames.csv").read_text("utf-8")
    forms: dict[str, tuple[str, ...]] = {}
    for row in csv.reader(text.splitlines()):
        if row and not row[0].startswith("#"):
            forms[row[0].strip().title()] = tuple(c.strip().title() for c in row[1:])
    return forms


def valid_nhs_numbers(rng: np.random.Generator, n: int) -> np.ndarray:
    """``n`` distinct 10-digit strings that pass the NHS modulus-11 check."""
    found: list[np.ndarray] = []
    have = 0
    while have < n:
        digits = rng.integers(0, 10, size=(int((n - have) * 1.2) + 16, 9))
        digits[:, 0] = rng.integers(4, 7, size=len(digits))  # real numbers start 4-6 (mostly)
        total = (digits * np.arange(10, 1, -1)).sum(axis=1)
        check = (11 - total % 11) % 11
        ok = check != 10
        full = np.concatenate([digits[ok], check[ok, None]], axis=1)
        found.append(full)
        have += len(full)
    allnum = np.concatenate(found)[:n]
    as_int = (allnum * (10 ** np.arange(9, -1, -1))).sum(axis=1)
    return np.char.zfill(as_int.astype(str), 10)


def _typo(rng: np.random.Generator, word: str) -> str:
    if len(word) < 3:
        return word
    i = int(rng.integers(1, len(word) - 1))
    kind = int(rng.integers(0, 3))
    if kind == 0:  # transpose two letters
        return word[: i - 1] + word[i] + word[i - 1] + word[i + 1 :]
    if kind == 1:  # drop a letter
        return word[:i] + word[i + 1 :]
    letter = "AEIOULNRST"[int(rng.integers(0, 10))]
    return word[:i] + (letter.lower() if word[i].islower() else letter) + word[i + 1 :]


def _postcodes(rng: np.random.Generator, n: int) -> np.ndarray:
    district = rng.choice(np.array(_DISTRICTS), size=n)
    sector = rng.integers(1, 10, size=n).astype(str)
    letters = np.array(list(_UNIT_LETTERS))
    unit = np.char.add(rng.choice(letters, size=n), rng.choice(letters, size=n))
    return np.char.add(np.char.add(np.char.add(district, " "), sector), unit)


@dataclass
class _Population:
    nhs: np.ndarray
    forename: np.ndarray
    surname: np.ndarray
    dob: np.ndarray  # days since 1970-01-01
    sex: np.ndarray
    postcode: np.ndarray
    old_postcode: np.ndarray
    frequency: np.ndarray  # how heavy a service user this person is (drives contacts)


def _population(rng: np.random.Generator, n: int, reference: date) -> _Population:
    female, male, surnames, weights = _names()
    sex = rng.choice(np.array(["F", "M"]), size=n)
    forename = np.where(
        sex == "F", rng.choice(np.array(female), size=n), rng.choice(np.array(male), size=n)
    )
    surname = rng.choice(np.array(surnames), size=n, p=weights)
    double = rng.random(n) < 0.04
    if double.any():
        second = rng.choice(np.array(surnames), size=int(double.sum()), p=weights)
        surname = surname.astype(object)
        surname[double] = np.char.add(np.char.add(surname[double].astype(str), "-"), second)
    ages = np.clip(rng.gamma(6.0, 7.0, size=n) + 16, 16, 99)
    ref_days = (reference - date(1970, 1, 1)).days
    dob = ref_days - (ages * 365.25).astype(np.int64) - rng.integers(0, 365, size=n)
    return _Population(
        nhs=valid_nhs_numbers(rng, n),
        forename=forename.astype(str),
        surname=np.asarray(surname).astype(str),
        dob=dob,
        sex=sex,
        postcode=_postcodes(rng, n),
        old_postcode=_postcodes(rng, n),
        frequency=rng.lognormal(0.0, 0.9, size=n),
    )


def _format_dates(days: np.ndarray, fmt: str) -> np.ndarray:
    epoch = date(1970, 1, 1)
    if fmt == "%Y-%m-%d":
        return np.datetime_as_string(days.astype("datetime64[D]"), unit="D")
    return np.array([(epoch + timedelta(days=int(d))).strftime(fmt) for d in days])


def _partner_table(rng: np.random.Generator, pop: _Population, profile: PartnerProfile) -> pa.Table:
    n_pop = len(pop.nhs)
    # frequent users are more likely to be known to every service
    p_seen = np.clip(profile.coverage * (0.5 + pop.frequency / pop.frequency.mean() * 0.5), 0, 0.95)
    people = np.flatnonzero(rng.random(n_pop) < p_seen)
    dup = people[rng.random(len(people)) < profile.duplicate]
    idx = np.sort(np.concatenate([people, dup]))
    n = len(idx)

    def chance(p: float) -> np.ndarray:
        return rng.random(n) < p

    forename = pop.forename[idx].astype(object)
    surname = pop.surname[idx].astype(object)
    nick = np.flatnonzero(chance(profile.nickname))
    forms = _nickname_forms()
    for i in nick:
        options = forms.get(forename[i])
        if options:
            forename[i] = options[int(rng.integers(0, len(options)))]
    for i in np.flatnonzero(chance(profile.name_error)):
        if rng.random() < 0.5:
            forename[i] = _typo(rng, forename[i])
        else:
            surname[i] = _typo(rng, surname[i])
    if profile.upper_case:
        forename = np.char.upper(forename.astype(str)).astype(object)
        surname = np.char.upper(surname.astype(str)).astype(object)

    dob = pop.dob[idx].copy()
    bad_dob = np.flatnonzero(chance(profile.dob_error))
    epoch = date(1970, 1, 1)
    for i in bad_dob:
        d = epoch + timedelta(days=int(dob[i]))
        if d.day <= 12 and d.day != d.month and rng.random() < 0.6:
            d = d.replace(day=d.month, month=d.day)
        else:
            d = d.replace(day=max(1, min(28, d.day + int(rng.choice([-1, 1])))))
        dob[i] = (d - epoch).days
    dob_text = _format_dates(dob, profile.date_format).astype(object)
    dob_text[chance(profile.dob_missing)] = None

    nhs = pop.nhs[idx].astype(object)
    # some recorded with spaces, as printed on NHS letters
    spaced = chance(0.3)
    nhs[spaced] = [f"{v[:3]} {v[3:6]} {v[6:]}" for v in nhs[spaced]]
    nhs[chance(profile.nhs_missing)] = None

    postcode = np.where(chance(profile.moved), pop.old_postcode[idx], pop.postcode[idx]).astype(
        object
    )
    nospace = chance(0.3)
    postcode[nospace] = [p.replace(" ", "").lower() for p in postcode[nospace]]
    postcode[chance(profile.postcode_missing)] = None

    sex = pop.sex[idx].astype(object)
    sex[chance(0.02)] = None
    contacts = np.maximum(1, rng.poisson(profile.mean_contacts * pop.frequency[idx])).astype(
        np.int64
    )
    need_p = np.asarray(profile.needs, dtype=float)
    need = rng.choice(np.array(NEEDS), size=n, p=need_p / need_p.sum())

    return pa.table(
        {
            "person_id": pa.array(idx, pa.int64()),
            "nhs_number": pa.array(nhs, pa.string()),
            "forename": pa.array(forename, pa.string()),
            "surname": pa.array(surname, pa.string()),
            "date_of_birth": pa.array(dob_text, pa.string()),
            "sex": pa.array(sex, pa.string()),
            "postcode": pa.array(postcode, pa.string()),
            "contacts": pa.array(contacts.astype(str), pa.string()),
            "service_need": pa.array(need, pa.string()),
        }
    )


def generate_partners(
    population: int,
    partners: Sequence[PartnerProfile] = DEMO_PARTNERS,
    *,
    seed: int = 2026,
    reference: date = date(2026, 4, 1),
) -> dict[str, pa.Table]:
    """One extract per partner, all as text columns the way a CSV export would hold them.

    ``person_id`` is the truth (the same person has the same id in every extract); drop it
    before hashing in real use. Row order is shuffled so the truth is not in the order.
    """
    rng = np.random.default_rng(seed)
    pop = _population(rng, population, reference)
    tables: dict[str, pa.Table] = {}
    for profile in partners:
        table = _partner_table(rng, pop, profile)
        tables[profile.name] = table.take(pa.array(rng.permutation(table.num_rows)))
    return tables
