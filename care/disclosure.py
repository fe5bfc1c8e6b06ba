"""Disclosure control for figures published to councils (market-shaping data).

Health and care statistics in England hide small counts of people so that nobody can be
picked out of a published table. The rules here, applied to one report's cells after the
figures have been aggregated in SQL:

1. **Small counts of people.** A count of people from 1 to `min_people - 1` (1-7 by
   default) is withheld: its value is `None` and it is flagged `SMALL_COUNT`. A zero is
   shown: there is nobody to protect.
2. **Rounding.** Every other count of people is rounded to the nearest `rounding_base`
   (5 by default; halves go up), so that even shown counts cannot be subtracted exactly.
3. **Figures resting on few people.** Hours, medians and shares computed over fewer than
   `min_people` people are withheld (`FEW_PEOPLE`); other measures are shown as computed.
   A zero over nobody (no hours missed by anyone) is shown: there is nobody to protect.
4. **Secondary suppression.** Cells that add up to a total (people by funding type and
   the people supported, say) form a group. When a group would show its total and all but
   one of its parts, the hidden part could be worked out by subtraction; then the
   smallest other part that is not zero is withheld too (`SECONDARY`), or, when there is
   none, the total. A hidden total with every part shown is likewise protected by
   withholding the smallest non-zero part. Groups may share cells, so this repeats until
   nothing changes.
5. **Counts of providers** (co-ops, clusters) are published as they are.

6. **Periods.** Periods are whole calendar months or quarters (the report snaps `from`
   and `to` to them), so two overlapping requests show the very same cells for the
   periods they share. A quarter's count of events is the sum of its months' counts, so
   a quarter asked for on its own would be a total over the months asked for separately;
   rounding alone does not protect that equation at its edges (two months shown as 10,
   true 8 at least, and a quarter shown as 15 leave exactly one possible value for a
   hidden third month). So a quarter's additive count is withheld (`SECONDARY`) whenever
   one of its months is withheld in the monthly view (`over_periods`).
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from enum import StrEnum


class CellKind(StrEnum):
    PEOPLE = "PEOPLE"  # a count of people: suppressed when small, rounded otherwise
    MEASURE = "MEASURE"  # hours, medians, shares: suppressed when resting on few people
    PROVIDERS = "PROVIDERS"  # counts of co-ops or clusters: never suppressed


class Withheld(StrEnum):
    SMALL_COUNT = "SMALL_COUNT"  # 1 to min_people - 1 people
    FEW_PEOPLE = "FEW_PEOPLE"  # a measure over fewer than min_people people
    SECONDARY = "SECONDARY"  # hidden so that another hidden cell cannot be recovered


@dataclass(frozen=True)
class DisclosureRules:
    """The thresholds (settings `DISCLOSURE_MIN_PEOPLE`, `DISCLOSURE_ROUNDING`)."""

    min_people: int = 8
    rounding_base: int = 5

    def __post_init__(self) -> None:
        if self.min_people < 1 or self.rounding_base < 1:
            raise ValueError("Disclosure thresholds must be at least 1.")


@dataclass(frozen=True)
class Cell:
    """A figure before disclosure control. `people` is how many people a MEASURE rests
    on (ignored for counts)."""

    kind: CellKind
    value: float | None
    people: int | None = None


@dataclass(frozen=True)
class Shown:
    """A figure as published: `value` is None when withheld (or when there was no figure
    to start with, e.g. a median of nothing), `withheld` says why."""

    value: float | None
    withheld: Withheld | None = None
    rounded: bool = False


@dataclass(frozen=True)
class Group:
    """Cells (by name) that add up to `total`."""

    total: str
    parts: tuple[str, ...]


@dataclass
class _Working:
    cells: Mapping[str, Cell]
    shown: dict[str, Shown] = field(default_factory=dict)

    def hidden(self, name: str) -> bool:
        return self.shown[name].withheld is not None

    def hide(self, name: str) -> None:
        self.shown[name] = Shown(None, Withheld.SECONDARY)


def round_to(value: float, base: int) -> int:
    """To the nearest multiple of `base`, halves up (Python's round() goes to even)."""
    return int(math.floor(value / base + 0.5)) * base


def primary(cell: Cell, rules: DisclosureRules) -> Shown:
    if cell.value is None:
        return Shown(None)
    if cell.kind is CellKind.PROVIDERS:
        return Shown(cell.value)
    if cell.kind is CellKind.PEOPLE:
        if 0 < cell.value < rules.min_people:
            return Shown(None, Withheld.SMALL_COUNT)
        return Shown(float(round_to(cell.value, rules.rounding_base)), rounded=cell.value != 0)
    if cell.people == 0 and not cell.value:
        return Shown(cell.value)  # nothing happened to anybody: nobody to protect
    if cell.people is None or cell.people < rules.min_people:
        return Shown(None, Withheld.FEW_PEOPLE)
    return Shown(cell.value)


def _smallest_visible_part(work: _Working, names: Iterable[str]) -> str | None:
    candidates = [
        n
        for n in names
        if not work.hidden(n)
        and (work.cells[n].value or 0) != 0
        and work.cells[n].value is not None
    ]
    if not candidates:
        return None
    return min(candidates, key=lambda n: (work.cells[n].value or 0.0, n))


def protect(
    cells: Mapping[str, Cell], groups: Sequence[Group], rules: DisclosureRules
) -> dict[str, Shown]:
    """Every cell as it may be published (the rules in the module docstring)."""
    for group in groups:
        unknown = [n for n in (group.total, *group.parts) if n not in cells]
        if unknown:
            raise KeyError(f"A group names cells that are not in the report: {unknown}.")
    work = _Working(cells, {name: primary(cell, rules) for name, cell in cells.items()})
    changed = True
    while changed:
        changed = False
        for group in groups:
            names = (group.total, *group.parts)
            # One unknown in an equation with everything else shown can be solved for;
            # a cell with no figure at all (None) is an unknown too, but needs no cover.
            unknowns = [n for n in names if work.shown[n].value is None]
            if len(unknowns) != 1 or not work.hidden(unknowns[0]):
                continue
            total_hidden = work.hidden(group.total)
            extra = _smallest_visible_part(work, group.parts)
            if extra is None and not total_hidden:
                extra = group.total
            if extra is None:
                continue  # a hidden total over parts that are all zero or unknown
            work.hide(extra)
            changed = True
    return work.shown


def over_periods(cell: Cell, months: Sequence[Shown], rules: DisclosureRules) -> Shown:
    """A count over a longer period that is the sum of its months' counts (events, hours):
    withheld when any month is, so that no month can be recovered as the longer period
    minus the others (rule 6)."""
    if any(m.withheld is not None for m in months):
        return Shown(None, Withheld.SECONDARY)
    return primary(cell, rules)
