"""Two releases side by side: the change in every figure both released.

Only released figures enter: a change is the difference of two public numbers, so it
reveals nothing either release did not. Where either side is suppressed the change is
suppressed too (never inferred). A change no larger than the releases' noise plus
rounding is marked as such: it may be the disclosure control, not the people.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from service.results.tables import natural_key, result_tables

__all__ = ["Change", "compare", "noise_band"]


@dataclass(frozen=True)
class Change:
    """One figure in two releases (None = suppressed there)."""

    group: str
    label: str
    figure: str
    before: int | float | None
    after: int | float | None

    def within_noise(self, band: int) -> bool:
        """A count whose change the disclosure control alone could explain."""
        change = self.change
        return (
            change is not None and not self.figure.endswith("mean_contacts") and abs(change) <= band
        )

    @property
    def change(self) -> int | float | None:
        if self.before is None or self.after is None:
            return None
        diff = self.after - self.before
        return round(diff, 1) if isinstance(diff, float) else diff


def noise_band(policy: Mapping[str, Any]) -> int:
    """The largest change the disclosure control alone can make to one count between two
    releases: the perturbation either way on each side, plus one rounding step."""
    cell_key = policy.get("cell_key")
    noise = int(cell_key.get("max_perturbation", 0)) if isinstance(cell_key, Mapping) else 0
    return 2 * noise + int(policy.get("round_to") or 1)


def compare(before: Mapping[str, Any], after: Mapping[str, Any]) -> list[Change]:
    """Every figure both releases name, in the order of the tables of ``after``."""
    previous = before["figures"]
    changes: list[Change] = []
    seen: set[str] = set()
    for table in result_tables(after):
        measures = table.header[1:]
        for label, cells in table.rows:
            for measure, cell in zip(measures, cells, strict=True):
                if cell.status == "absent" or cell.figure not in previous or cell.figure in seen:
                    continue
                seen.add(cell.figure)
                group = table.title if len(measures) == 1 else f"{table.title}: {measure}"
                changes.append(Change(group, label, cell.figure, previous[cell.figure], cell.value))
    rest = sorted(set(previous) & set(after["figures"]) - seen, key=natural_key)
    changes += [
        Change("Other released figures", n, n, previous[n], after["figures"][n]) for n in rest
    ]
    return changes
