"""The linkage spec: one JSON document per project, shared by every partner.

The spec fixes everything partners must agree on for their tokens to be comparable:
which identifier fields exist and how each is normalised (its *type*), which derived
variants are hashed, the token length, optional Bloom filters, and which non-identifying
attributes travel in the clear. It also carries what the enclave needs later: blocking
rules, the match threshold, the cohort settings and the disclosure policy.

It is also the contract for the hashed extract's columns (see :func:`token_columns`,
:func:`output_schema`): ``t_<field>_<variant>`` tokens (fixed-size binary), ``b_<field>``
Bloom filters, ``a_<attribute>`` attributes in the clear, and ``row_ref``.

Errors name the path inside the spec, e.g. ``identifiers[2].type: unknown type 'postcde'``.
"""

from __future__ import annotations

import hashlib
import itertools
import json
import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import date
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator, model_validator

from linkage.errors import SpecError

if TYPE_CHECKING:
    import pyarrow as pa

# pyarrow is imported by output_schema only: the API parses specs and fingerprints them,
# and must not load pyarrow to do so

__all__ = [
    "ATTRIBUTE_KINDS",
    "IDENTIFIER_TYPES",
    "ROW_REF_COLUMN",
    "VARIANTS_BY_TYPE",
    "AttributeSpec",
    "BloomSpec",
    "CellKeyPerturbation",
    "DifferentialPrivacy",
    "DisclosurePolicy",
    "EncodingSpec",
    "IdentifierSpec",
    "MatchingSpec",
    "Spec",
    "StatisticsSpec",
    "TokenColumn",
    "attribute_column",
    "bloom_column",
    "default_blocking_rules",
    "fingerprint",
    "load_spec",
    "output_schema",
    "parse_spec",
    "policy_fingerprint",
    "token_column",
    "token_columns",
]

#: Derived variants hashed for each identifier type, strongest first. ``exact`` / ``full``
#: is always first. Names also yield ``part1``/``part2`` (hyphenated and double-barrelled
#: names split; ``part1`` is the whole name when there is one part) and ``nickname``
#: (canonical form from a shared nickname table, e.g. BOB -> ROBERT), and ``swap`` (the
#: name hashed in one domain shared by forenames and surnames, so that a forename and
#: surname recorded the other way round still agree). Ids also yield ``mask1``..``mask3``
#: (the id with one third masked: one mistyped character leaves one of them intact) and
#: ``sorted`` (its characters sorted: two characters transposed still agree).
VARIANTS_BY_TYPE: dict[str, tuple[str, ...]] = {
    "nhs_number": ("exact",),
    "forename": ("exact", "nickname", "phonetic", "prefix3", "initial", "part1", "part2", "swap"),
    "surname": ("exact", "phonetic", "prefix3", "initial", "part1", "part2", "swap"),
    "date": ("full", "swapped", "year", "month_day", "year_month"),
    "sex": ("exact",),
    "uk_postcode": ("full", "sector", "district"),
    "string": ("exact",),
    "id": ("exact", "mask1", "mask2", "mask3", "sorted"),
    "postcode": ("full", "prefix3"),
}
IDENTIFIER_TYPES: tuple[str, ...] = tuple(VARIANTS_BY_TYPE)
ATTRIBUTE_KINDS: tuple[str, ...] = ("age_band", "area", "category", "count")
BLOOM_TYPES: frozenset[str] = frozenset({"forename", "surname", "string"})
ROW_REF_COLUMN = "row_ref"

_NAME_RE = re.compile(r"^[a-z][a-z0-9]*(_[a-z0-9]+)*$")
_MAX_NAME = 40


def _check_name(value: str) -> str:
    if len(value) > _MAX_NAME or not _NAME_RE.match(value):
        raise ValueError(
            f"invalid name {value!r}: use lower-case letters, digits and single underscores, "
            f"starting with a letter, at most {_MAX_NAME} characters"
        )
    return value


class _Model(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True, str_strip_whitespace=True)


class IdentifierSpec(_Model):
    """An identifier field: hashed, never sent in the clear."""

    name: str
    type: str
    column: str | None = Field(
        default=None, description="Column in the partner's extract; defaults to `name`."
    )
    variants: tuple[str, ...] | None = Field(
        default=None, description="Derived variants to hash; defaults to all for the type."
    )
    aliases: tuple[str, ...] | None = Field(
        default=None,
        description="Other header names partners' files use for this column (matched "
        "ignoring case, spaces and punctuation).",
    )
    formats: tuple[str, ...] | None = Field(
        default=None,
        description="date: the strptime formats partners write, tried in order, e.g. "
        '["%m/%d/%Y"]; defaults to ISO, dd/mm/yyyy, dd-mm-yy and yyyymmdd.',
    )

    @field_validator("name")
    @classmethod
    def _valid_name(cls, value: str) -> str:
        return _check_name(value)

    @field_validator("formats")
    @classmethod
    def _valid_formats(cls, value: tuple[str, ...] | None) -> tuple[str, ...] | None:
        if value is None:
            return None
        if not value:
            raise ValueError("formats must list at least one strptime format, e.g. '%d/%m/%Y'")
        for fmt in value:
            directives = set(re.findall(r"%(.)", fmt))
            if not {"d", "m"} <= directives or not directives & {"Y", "y"}:
                raise ValueError(
                    f"format {fmt!r} needs a day (%d), a month (%m) and a year (%Y or %y)"
                )
            if directives - {"d", "m", "Y", "y", "b", "B", "%"}:
                raise ValueError(f"format {fmt!r}: use only %d, %m, %Y, %y, %b and %B")
        return value

    @field_validator("type")
    @classmethod
    def _known_type(cls, value: str) -> str:
        if value not in VARIANTS_BY_TYPE:
            raise ValueError(
                f"unknown type {value!r} (expected one of: {', '.join(IDENTIFIER_TYPES)})"
            )
        return value

    @model_validator(mode="after")
    def _known_variants(self) -> IdentifierSpec:
        if self.variants is not None:
            allowed = VARIANTS_BY_TYPE[self.type]
            first = allowed[0]
            for variant in self.variants:
                if variant not in allowed:
                    raise ValueError(
                        f"unknown variant {variant!r} for type {self.type!r} "
                        f"(expected some of: {', '.join(allowed)})"
                    )
            if first not in self.variants:
                raise ValueError(f"variants must include {first!r}")
        if self.formats is not None and self.type != "date":
            raise ValueError("'formats' applies only to date identifiers")
        return self

    @property
    def source_column(self) -> str:
        """The input column this identifier is read from."""
        return self.column or self.name

    @property
    def active_variants(self) -> tuple[str, ...]:
        """The variants hashed for this field, in the canonical order."""
        allowed = VARIANTS_BY_TYPE[self.type]
        if self.variants is None:
            return allowed
        return tuple(v for v in allowed if v in self.variants)


class AttributeSpec(_Model):
    """A non-identifying attribute that travels in the clear (coarse by construction)."""

    name: str
    kind: Literal["age_band", "area", "category", "count"]
    source: str | None = Field(
        default=None,
        description="age_band: a `date` identifier; area: a `uk_postcode`/`postcode` identifier.",
    )
    column: str | None = Field(
        default=None, description="category/count: input column; defaults to `name`."
    )
    bands: tuple[int, ...] | None = Field(
        default=None, description="age_band: lower bounds in years, ascending, from 0."
    )
    values: tuple[str, ...] | None = Field(
        default=None, description="category: the allowed values (shared data dictionary)."
    )
    max_value: int = Field(default=100_000, ge=1, description="count: largest accepted value.")
    aliases: tuple[str, ...] | None = Field(
        default=None, description="category/count: other header names for the column."
    )
    level: Literal["district", "sector"] | None = Field(
        default=None,
        description="area from a `uk_postcode`: postcode district (default, e.g. LS2) or "
        "sector (e.g. LS2 7), finer, so more of its cells are suppressed.",
    )

    @field_validator("name")
    @classmethod
    def _valid_name(cls, value: str) -> str:
        return _check_name(value)

    @model_validator(mode="after")
    def _kind_fields(self) -> AttributeSpec:
        if self.kind in ("age_band", "area") and not self.source:
            raise ValueError(f"a {self.kind} attribute needs 'source' (an identifier name)")
        if self.kind in ("category", "count") and self.source:
            raise ValueError(f"a {self.kind} attribute reads 'column', not 'source'")
        if self.kind == "age_band":
            bands = self.bands or (0, 18, 25, 35, 45, 55, 65, 75, 85)
            if bands[0] != 0 or any(b >= c for b, c in itertools.pairwise(bands)):
                raise ValueError("bands must start at 0 and be strictly ascending")
        elif self.bands is not None:
            raise ValueError("'bands' applies only to age_band attributes")
        if self.kind == "category":
            if not self.values:
                raise ValueError("a category attribute needs 'values' (the allowed values)")
            if len(set(self.values)) != len(self.values):
                raise ValueError("'values' must not repeat")
        elif self.values is not None:
            raise ValueError("'values' applies only to category attributes")
        if self.level is not None and self.kind != "area":
            raise ValueError("'level' applies only to area attributes")
        return self

    @property
    def sector(self) -> bool:
        """An area attribute at postcode-sector level (else district)."""
        return self.kind == "area" and self.level == "sector"

    @property
    def source_column(self) -> str:
        """The input column of a category/count attribute."""
        return self.column or self.name

    @property
    def age_bands(self) -> tuple[int, ...]:
        """Band lower bounds for an age_band attribute."""
        return self.bands or (0, 18, 25, 35, 45, 55, 65, 75, 85)

    def band_labels(self) -> tuple[str, ...]:
        """Labels of the age bands, e.g. ``('0-17', '18-24', ..., '85+')``."""
        bands = self.age_bands
        labels = [f"{lo}-{hi - 1}" for lo, hi in itertools.pairwise(bands)]
        return (*labels, f"{bands[-1]}+")


class BloomSpec(_Model):
    """Per-field Bloom-filter encodings compared by Dice similarity in the enclave."""

    fields: tuple[str, ...]
    bits: int = Field(default=1024, ge=64, le=8192, multiple_of=8)
    hashes: int = Field(default=20, ge=1, le=64)
    ngram: int = Field(default=2, ge=1, le=4)
    hardening: Literal["none", "balance", "xor_fold"] = "balance"


class EncodingSpec(_Model):
    """How tokens are made: length in bits, and optional Bloom filters."""

    token_bits: int = Field(default=128, ge=64, le=256, multiple_of=32)
    bloom: BloomSpec | None = None


class MatchingSpec(_Model):
    """What the enclave does with the tokens."""

    blocking: tuple[tuple[str, ...], ...] | None = Field(
        default=None,
        description="Rules as lists of 'field.variant' that must agree; defaults from types.",
    )
    threshold: float | Literal["balanced"] = Field(
        default="balanced",
        description="Match probability to link at; 'balanced' (the default): where the "
        "model expects as many false links as missed ones, between 0.5 and 0.9, so that "
        "counts of people are not biased down by the uncertain pairs a fixed strict "
        "threshold leaves unlinked.",
    )
    term_frequency: tuple[str, ...] | None = Field(
        default=None, description="Fields with term-frequency adjustment; default: names."
    )
    max_pairs_for_u: int = Field(default=2_000_000, ge=10_000)

    @field_validator("threshold", mode="before")
    @classmethod
    def _probability_or_balanced(cls, value: Any) -> Any:
        if value == "balanced":
            return value
        if isinstance(value, int | float) and not isinstance(value, bool) and 0 < value < 1:
            return float(value)
        raise ValueError(f"{value!r} is not a probability between 0 and 1 or 'balanced'")


class StatisticsSpec(_Model):
    """Cohort settings: who counts as a frequent user."""

    contacts_attribute: str | None = Field(
        default=None, description="A count attribute summed per person (e.g. contacts)."
    )
    frequent_threshold: int = Field(default=10, ge=1)


class DifferentialPrivacy(_Model):
    """Optional Laplace/discrete-Gaussian noise with a per-project epsilon budget."""

    epsilon_per_release: float = Field(gt=0.0, le=10.0)
    epsilon_budget: float = Field(gt=0.0, le=100.0)


class CellKeyPerturbation(_Model):
    """The cell key method's noise (on unless ``dp`` is set): see ``linkage.perturb``.

    Each count gets noise from a discrete Laplace distribution cut off at
    ``max_perturbation``: one person more or less in a cell changes the probability of
    any released value by at most a factor of exp(``epsilon``), except with a
    probability of about exp(-epsilon * max_perturbation) (the cut-off's tail).
    """

    epsilon: float = Field(default=0.5, gt=0.0, le=5.0)
    max_perturbation: int = Field(default=10, ge=1, le=100)


class DisclosurePolicy(_Model):
    """Statistical disclosure control applied to every released figure.

    Every count is first perturbed (``cell_key``, or ``dp`` when set); then a perturbed
    value below ``suppress_below`` is suppressed, zero included (a released 0 would tell
    an empty cell from a small one), and the rest rounded to the nearest ``round_to``
    (1 = no rounding). ``style`` is kept for older policies: ``nhs`` and ``threshold``
    now release the same. A person's contacts count at most ``contacts_bound`` in a mean.
    """

    style: Literal["nhs", "threshold"] = "nhs"
    suppress_below: int = Field(default=8, ge=1, le=1000)
    round_to: int = Field(default=5, ge=1, le=1000)
    min_n_for_mean: int = Field(default=10, ge=1)
    dp: DifferentialPrivacy | None = None
    cell_key: CellKeyPerturbation = CellKeyPerturbation()
    contacts_bound: int = Field(default=200, ge=1, le=100_000)


class Spec(_Model):
    """A project's linkage spec. Build with :func:`parse_spec` or :func:`load_spec`."""

    version: str = Field(description="The spec author's version label, e.g. '1.0'.")
    name: str | None = None
    description: str | None = None
    reference_date: date = Field(description="Date at which ages are computed.")
    identifiers: tuple[IdentifierSpec, ...] = Field(min_length=1, max_length=32)
    attributes: tuple[AttributeSpec, ...] = Field(default=(), max_length=32)
    encoding: EncodingSpec = EncodingSpec()
    matching: MatchingSpec = MatchingSpec()
    statistics: StatisticsSpec = StatisticsSpec()
    disclosure: DisclosurePolicy = DisclosurePolicy()

    @field_validator("version", mode="before")
    @classmethod
    def _version_str(cls, value: Any) -> Any:
        return str(value) if isinstance(value, int | float) else value

    @model_validator(mode="after")
    def _cross_references(self) -> Spec:
        names = [i.name for i in self.identifiers]
        by_name = {i.name: i for i in self.identifiers}
        for idx, ident in enumerate(self.identifiers):
            if ident.name in names[:idx]:
                raise _PathError(f"identifiers[{idx}].name", f"duplicate name {ident.name!r}")
        attr_names = [a.name for a in self.attributes]
        for idx, attr in enumerate(self.attributes):
            where = f"attributes[{idx}]"
            if attr.name in attr_names[:idx]:
                raise _PathError(f"{where}.name", f"duplicate name {attr.name!r}")
            if attr.name in by_name:
                raise _PathError(f"{where}.name", f"{attr.name!r} is also an identifier")
            if attr.source is not None:
                src = by_name.get(attr.source)
                want = ("date",) if attr.kind == "age_band" else ("uk_postcode", "postcode")
                if src is None:
                    raise _PathError(f"{where}.source", f"no identifier named {attr.source!r}")
                if src.type not in want:
                    raise _PathError(
                        f"{where}.source",
                        f"{attr.kind} needs an identifier of type {' or '.join(want)}, "
                        f"not {src.type!r}",
                    )
                if attr.sector and src.type != "uk_postcode":
                    raise _PathError(
                        f"{where}.level", "sector needs a uk_postcode source (sectors are UK)"
                    )
        if self.encoding.bloom is not None:
            for idx, fname in enumerate(self.encoding.bloom.fields):
                bloomed = by_name.get(fname)
                if bloomed is None:
                    raise _PathError(f"encoding.bloom.fields[{idx}]", f"no identifier {fname!r}")
                if bloomed.type not in BLOOM_TYPES:
                    raise _PathError(
                        f"encoding.bloom.fields[{idx}]",
                        f"Bloom filters apply to {', '.join(sorted(BLOOM_TYPES))} fields, "
                        f"not {bloomed.type!r}",
                    )
        if self.matching.blocking is not None:
            for r_idx, rule in enumerate(self.matching.blocking):
                if not rule:
                    raise _PathError(f"matching.blocking[{r_idx}]", "a rule needs a column")
                for c_idx, ref in enumerate(rule):
                    self._check_ref(f"matching.blocking[{r_idx}][{c_idx}]", ref, by_name)
        for idx, fname in enumerate(self.matching.term_frequency or ()):
            if fname not in by_name:
                raise _PathError(f"matching.term_frequency[{idx}]", f"no identifier {fname!r}")
        contacts = self.statistics.contacts_attribute
        if contacts is not None:
            counted = next((a for a in self.attributes if a.name == contacts), None)
            if counted is None or counted.kind != "count":
                raise _PathError(
                    "statistics.contacts_attribute", f"{contacts!r} is not a count attribute"
                )
        return self

    @staticmethod
    def _check_ref(path: str, ref: str, by_name: Mapping[str, IdentifierSpec]) -> None:
        field, _, variant = ref.partition(".")
        ident = by_name.get(field)
        if ident is None:
            raise _PathError(path, f"no identifier named {field!r}")
        variant = variant or ident.active_variants[0]
        if variant not in ident.active_variants:
            raise _PathError(path, f"{field!r} has no variant {variant!r}")

    def identifier(self, name: str) -> IdentifierSpec:
        """The identifier called ``name``."""
        for ident in self.identifiers:
            if ident.name == name:
                return ident
        raise KeyError(name)

    def attribute(self, name: str) -> AttributeSpec:
        """The attribute called ``name``."""
        for attr in self.attributes:
            if attr.name == name:
                return attr
        raise KeyError(name)

    @property
    def token_bytes(self) -> int:
        """Bytes per token."""
        return self.encoding.token_bits // 8

    def blocking_rules(self) -> tuple[tuple[str, ...], ...]:
        """Blocking rules as tuples of token column names (spec's own, else defaults)."""
        rules = self.matching.blocking or default_blocking_rules(self)
        out = []
        for rule in rules:
            cols = []
            for ref in rule:
                field, _, variant = ref.partition(".")
                ident = self.identifier(field)
                cols.append(token_column(field, variant or ident.active_variants[0]))
            out.append(tuple(cols))
        return tuple(out)

    def canonical_json(self) -> str:
        """The canonical form that the fingerprint is taken over."""
        data = self.model_dump(mode="json")
        # keys added after specs were in use count only when set, so the fingerprint of
        # every spec written before them stays what its partners' extracts carry
        for item in (*data["identifiers"], *data["attributes"]):
            for key in _OPTIONAL_KEYS:
                if item.get(key, 0) is None:
                    del item[key]
        return json.dumps(data, sort_keys=True, separators=(",", ":"), ensure_ascii=True)


_OPTIONAL_KEYS = ("aliases", "formats", "level")


class _PathError(ValueError):
    """A cross-reference error that knows its own path inside the spec."""

    def __init__(self, path: str, message: str) -> None:
        super().__init__(f"{path}: {message}")
        self.path = path
        self.message = message


@dataclass(frozen=True)
class TokenColumn:
    """One hashed token column of the extract."""

    field: str
    type: str
    variant: str
    column: str


def token_column(field: str, variant: str) -> str:
    """Column name of the token for ``field``'s ``variant``: ``t_<field>_<variant>``."""
    return f"t_{field}_{variant}"


def bloom_column(field: str) -> str:
    """Column name of ``field``'s Bloom filter: ``b_<field>``."""
    return f"b_{field}"


def attribute_column(name: str) -> str:
    """Column name of attribute ``name`` in the extract: ``a_<name>``."""
    return f"a_{name}"


def token_columns(spec: Spec) -> list[TokenColumn]:
    """Every token column the spec asks for, in a stable order."""
    return [
        TokenColumn(i.name, i.type, v, token_column(i.name, v))
        for i in spec.identifiers
        for v in i.active_variants
    ]


def output_schema(spec: Spec) -> pa.Schema:
    """The exact Arrow schema of a hashed extract for ``spec`` (without the manifest).

    ``row_ref`` (int64, the 1-based input row so the partner can map back), then tokens as
    ``fixed_size_binary(token_bits/8)``, Bloom filters as ``fixed_size_binary(bits/8)``,
    and attributes: age_band/area/category as strings, count as int32. All but
    ``row_ref`` are nullable: a partner may leave any identifier empty for a row.
    """
    import pyarrow as pa

    fields: list[pa.Field] = [pa.field(ROW_REF_COLUMN, pa.int64(), nullable=False)]
    tok = pa.binary(spec.token_bytes)
    fields += [pa.field(tc.column, tok) for tc in token_columns(spec)]
    if spec.encoding.bloom is not None:
        bf = pa.binary(spec.encoding.bloom.bits // 8)
        fields += [pa.field(bloom_column(f), bf) for f in spec.encoding.bloom.fields]
    for attr in spec.attributes:
        kind = pa.int32() if attr.kind == "count" else pa.string()
        fields.append(pa.field(attribute_column(attr.name), kind))
    return pa.schema(fields)


def default_blocking_rules(spec: Spec) -> tuple[tuple[str, ...], ...]:
    """Sensible blocking rules from the identifier types present in ``spec``.

    Each rule is a tuple of ``field.variant`` references. The aim is recall under typical
    errors: any one strong identifier agreeing, or a coarse name key with a date part.
    """
    by_type: dict[str, list[IdentifierSpec]] = {}
    for ident in spec.identifiers:
        by_type.setdefault(ident.type, []).append(ident)

    def first(kind: str) -> IdentifierSpec | None:
        found = by_type.get(kind)
        return found[0] if found else None

    rules: list[tuple[str, ...]] = []
    for ident in by_type.get("nhs_number", []) + by_type.get("id", []):
        rules.append((f"{ident.name}.exact",))
    sur, fore, dob = first("surname"), first("forename"), first("date")
    pc = first("uk_postcode") or first("postcode")

    def has(ident: IdentifierSpec | None, variant: str) -> bool:
        return ident is not None and variant in ident.active_variants

    if dob is not None:
        if has(sur, "phonetic") and "year_month" in dob.active_variants:
            # year and month, not year alone: a twelfth of the pairs (1M records: predict
            # 57 s -> see benchmarks) for the same recall under the other rules
            rules.append((f"{sur.name}.phonetic", f"{dob.name}.year_month"))  # type: ignore[union-attr]
        if has(fore, "initial"):
            rules.append((f"{fore.name}.initial", f"{dob.name}.full"))  # type: ignore[union-attr]
    if has(sur, "exact") and has(fore, "nickname"):
        # catches people whose date of birth is wrong or missing in one extract
        rules.append((f"{sur.name}.exact", f"{fore.name}.nickname"))  # type: ignore[union-attr]
    if pc is not None:
        if has(fore, "prefix3"):
            rules.append((f"{pc.name}.full", f"{fore.name}.prefix3"))  # type: ignore[union-attr]
        elif has(sur, "prefix3"):
            rules.append((f"{pc.name}.full", f"{sur.name}.prefix3"))  # type: ignore[union-attr]
    if sur is not None and fore is not None and not rules:
        rules.append((f"{sur.name}.exact", f"{fore.name}.exact"))
    if not rules:
        rules.append((f"{spec.identifiers[0].name}.{spec.identifiers[0].active_variants[0]}",))
    return tuple(rules)


def _format_loc(loc: Sequence[int | str]) -> str:
    out = ""
    for part in loc:
        if isinstance(part, int):
            out += f"[{part}]"
        elif part.startswith(("function-", "model-")) or part in ("function-after",):
            continue
        else:
            out += f".{part}" if out else part
    return out or "(spec)"


def _spec_error(exc: ValidationError, origin: str | None) -> SpecError:
    err = exc.errors(include_url=False)[0]
    raw = err.get("ctx", {}).get("error")
    if isinstance(raw, _PathError):
        path, message = raw.path, raw.message
    else:
        path = _format_loc(err["loc"])
        message = str(err["msg"])
        for prefix in ("Value error, ", "Assertion failed, "):
            message = message.removeprefix(prefix)
        if err["type"] == "extra_forbidden":
            message = "unknown key (check the spelling)"
        elif err["type"] == "missing":
            message = "required but missing"
    more = len(exc.errors()) - 1
    suffix = f" (and {more} more problem{'s' if more > 1 else ''})" if more else ""
    where = f"{origin}: " if origin else ""
    return SpecError(f"{where}{path}: {message}{suffix}")


def parse_spec(data: Mapping[str, Any] | str | bytes, *, origin: str | None = None) -> Spec:
    """Validate a spec given as a mapping or JSON text; raise :class:`SpecError` naming the path."""
    if isinstance(data, str | bytes):
        try:
            data = json.loads(data)
        except json.JSONDecodeError as exc:
            where = f"{origin}: " if origin else ""
            raise SpecError(
                f"{where}not valid JSON at line {exc.lineno} column {exc.colno}: {exc.msg}"
            ) from None
        except RecursionError:
            raise SpecError(f"{origin or 'spec'}: JSON nested too deeply") from None
    if not isinstance(data, Mapping):
        raise SpecError(f"{origin or 'spec'}: a spec is a JSON object")
    try:
        return Spec.model_validate(data)
    except ValidationError as exc:
        raise _spec_error(exc, origin) from None
    except RecursionError:
        raise SpecError(f"{origin or 'spec'}: nested too deeply") from None


def load_spec(path: str | Path) -> Spec:
    """Read and validate a spec file."""
    p = Path(path)
    try:
        text = p.read_bytes()
    except FileNotFoundError:
        raise SpecError(f"{p}: spec file not found") from None
    except OSError as exc:
        raise SpecError(f"{p}: cannot read spec file ({exc.strerror})") from None
    if len(text) > 1_000_000:
        raise SpecError(f"{p}: spec file is larger than 1 MB")
    return parse_spec(text, origin=str(p))


def fingerprint(spec: Spec) -> str:
    """Stable fingerprint of the spec: ``sha256:<hex>`` of its canonical JSON."""
    return "sha256:" + hashlib.sha256(spec.canonical_json().encode("ascii")).hexdigest()


def policy_fingerprint(policy: DisclosurePolicy) -> str:
    """Stable fingerprint of a disclosure policy: ``sha256:<hex>`` of its canonical JSON.

    Partners' upload envelopes carry the fingerprint of the policy they agreed to, so a
    policy changed behind their back is refused instead of silently applied.
    """
    canonical = json.dumps(
        policy.model_dump(mode="json"), sort_keys=True, separators=(",", ":"), ensure_ascii=True
    )
    return "sha256:" + hashlib.sha256(canonical.encode("ascii")).hexdigest()
