"""Disclosure control (care/disclosure.py): every rule, and attempts to undo it."""

from __future__ import annotations

import itertools

import pytest

from care.disclosure import (
    Cell,
    CellKind,
    DisclosureRules,
    Group,
    Shown,
    Withheld,
    over_periods,
    primary,
    protect,
    round_to,
)

RULES = DisclosureRules()


def people(n: float) -> Cell:
    return Cell(CellKind.PEOPLE, n)


@pytest.mark.parametrize("count", range(1, 8))
def test_counts_of_one_to_seven_people_are_withheld(count: int) -> None:
    assert primary(people(count), RULES) == Shown(None, Withheld.SMALL_COUNT)


@pytest.mark.parametrize(
    ("count", "shown"), [(0, 0), (8, 10), (12, 10), (13, 15), (17, 15), (18, 20), (22, 20)]
)
def test_other_counts_of_people_are_rounded_to_five_halves_up(count: int, shown: int) -> None:
    result = primary(people(count), RULES)
    assert result.value == shown and result.withheld is None


def test_rounding_halves_go_up() -> None:
    assert [round_to(v, 5) for v in (2.5, 7.5, 12.5, 12.4)] == [5, 10, 15, 10]


def test_measures_resting_on_fewer_than_eight_people_are_withheld() -> None:
    assert primary(Cell(CellKind.MEASURE, 41.5, people=7), RULES).withheld is Withheld.FEW_PEOPLE
    assert primary(Cell(CellKind.MEASURE, 41.5, people=None), RULES).withheld is Withheld.FEW_PEOPLE
    assert primary(Cell(CellKind.MEASURE, 41.5, people=8), RULES) == Shown(41.5)
    # Nothing over nobody is shown; something over nobody known is not.
    assert primary(Cell(CellKind.MEASURE, 0, people=0), RULES) == Shown(0)
    assert primary(Cell(CellKind.MEASURE, 2.5, people=0), RULES).withheld is Withheld.FEW_PEOPLE


def test_provider_counts_are_never_suppressed() -> None:
    assert primary(Cell(CellKind.PROVIDERS, 1), RULES) == Shown(1)
    assert primary(Cell(CellKind.PROVIDERS, 3), RULES) == Shown(3)


def test_thresholds_are_configurable() -> None:
    strict = DisclosureRules(min_people=11, rounding_base=10)
    assert primary(people(10), strict).withheld is Withheld.SMALL_COUNT
    assert primary(people(14), strict).value == 10
    assert primary(Cell(CellKind.MEASURE, 3.0, people=10), strict).withheld is Withheld.FEW_PEOPLE
    with pytest.raises(ValueError):
        DisclosureRules(min_people=0)


FUNDING = Group(
    "people", ("direct_payment", "personal_budget", "la_commissioned", "nhs_chc", "self_funded")
)


def test_one_hidden_part_takes_the_smallest_other_part_with_it() -> None:
    cells = {
        "people": people(61),
        "direct_payment": people(30),
        "personal_budget": people(3),  # withheld
        "la_commissioned": people(18),
        "nhs_chc": people(0),  # a zero protects nothing
        "self_funded": people(10),
    }
    shown = protect(cells, [FUNDING], RULES)
    assert shown["personal_budget"].withheld is Withheld.SMALL_COUNT
    assert shown["self_funded"] == Shown(None, Withheld.SECONDARY)
    assert shown["nhs_chc"].value == 0
    assert shown["people"].value == 60 and shown["direct_payment"].value == 30


def test_with_no_other_part_to_hide_the_total_goes() -> None:
    # A total of distinct people need not be the sum of its parts (say, people with any
    # visit against people by a need): with no other part to hide, the total is hidden.
    cells = {"people": people(20), "a": people(3), "b": people(0)}
    shown = protect(cells, [Group("people", ("a", "b"))], RULES)
    assert shown["a"].withheld is Withheld.SMALL_COUNT
    assert shown["people"] == Shown(None, Withheld.SECONDARY)
    assert shown["b"].value == 0


def test_a_hidden_total_with_every_part_shown_hides_a_part() -> None:
    # `t` is hidden for the grand total's sake; then t = a + b would give it away.
    cells = {"grand": people(33), "t": people(30), "u": people(3), "a": people(10), "b": people(20)}
    groups = [Group("grand", ("t", "u")), Group("t", ("a", "b"))]
    shown = protect(cells, groups, RULES)
    assert shown["u"].withheld is Withheld.SMALL_COUNT
    assert shown["t"].withheld is Withheld.SECONDARY
    assert shown["a"].withheld is Withheld.SECONDARY
    assert shown["b"].value == 20 and shown["grand"].value == 35


def test_shared_cells_propagate_until_stable() -> None:
    # Two groups share `b`: hiding it for the first group opens the second.
    cells = {
        "t1": people(40),
        "a": people(2),
        "b": people(20),
        "c": people(18),
        "t2": people(50),
        "d": people(30),
    }
    groups = [Group("t1", ("a", "b", "c")), Group("t2", ("b", "d"))]
    shown = protect(cells, groups, RULES)
    assert shown["a"].withheld is Withheld.SMALL_COUNT
    # b (18 < 20? no: c = 18 is the smallest other part) -> c hidden in group 1
    assert shown["c"].withheld is Withheld.SECONDARY
    assert shown["b"].withheld is None
    cells["c"] = people(25)  # now b is the smallest: hidden, which exposes it in t2
    shown = protect(cells, groups, RULES)
    assert shown["b"].withheld is Withheld.SECONDARY
    assert shown["d"].withheld is Withheld.SECONDARY
    for group in groups:
        unknown = [n for n in (group.total, *group.parts) if shown[n].withheld is not None]
        assert len(unknown) != 1


def test_no_group_is_left_with_exactly_one_unknown_whatever_the_counts() -> None:
    """Exhaustively over small tables: after protection, no group has a single hidden
    cell, so no hidden value is the total minus the shown parts."""
    group = Group("t", ("a", "b", "c"))
    for a, b, c in itertools.product((0, 1, 5, 8, 9, 30), repeat=3):
        cells = {"t": people(a + b + c), "a": people(a), "b": people(b), "c": people(c)}
        shown = protect(cells, [group], RULES)
        hidden = [n for n in ("t", "a", "b", "c") if shown[n].withheld is not None]
        assert len(hidden) != 1, (a, b, c, shown)


def _consistent_months(q: float, shown: list[Shown]) -> set[tuple[int, ...]]:
    """Every true (m1, m2, m3) an attacker could hold possible, from a quarter shown as
    `q` and the months as shown (hidden: 1-7 or, if secondary, any; shown v: a value that
    rounds to v and is not small)."""
    ranges = []
    for m in shown:
        if m.value is None:
            ranges.append(range(0, 60))
        else:
            ranges.append(range(int(m.value) - 2, int(m.value) + 3) if m.value else range(0, 1))
    return {
        combo
        for combo in itertools.product(*ranges)
        if all(primary(people(v), RULES) == s for v, s in zip(combo, shown, strict=True))
        and round_to(sum(combo), 5) == q
    }


def test_rounding_alone_lets_a_quarter_give_a_hidden_month_away() -> None:
    """Why rule 6 exists: without it, a quarter of 17 people-visits shown as 15 and two
    months of 8 shown as 10 leave exactly one value for the hidden month."""
    months = [primary(people(v), RULES) for v in (8, 8, 1)]
    quarter = primary(people(17), RULES).value
    assert quarter == 15
    assert {c[2] for c in _consistent_months(quarter, months)} == {1}


def test_differencing_a_quarter_and_its_months_recovers_no_hidden_month() -> None:
    """The attack: ask for months, ask for the quarter, subtract. With rule 6 a quarter
    is only shown when none of its months is hidden; whenever a month is hidden, so is
    the quarter, and the months alone leave the hidden one open."""
    for m1, m2, m3 in itertools.product((0, 1, 4, 7, 8, 9, 12, 13, 20, 33), repeat=3):
        months = [primary(people(v), RULES) for v in (m1, m2, m3)]
        quarter = over_periods(people(m1 + m2 + m3), months, RULES)
        hidden = [i for i, m in enumerate(months) if m.withheld is not None]
        if hidden:
            assert quarter.withheld is Withheld.SECONDARY
        else:
            assert quarter.value == round_to(m1 + m2 + m3, 5)
            continue
        # What the attacker may still try: months alone, each hidden one in 1..7.
        for i in hidden:
            assert len({c[i] for c in _consistent_months_without_quarter(months)}) >= 2


def _consistent_months_without_quarter(shown: list[Shown]) -> set[tuple[int, ...]]:
    ranges = [
        range(1, 8) if m.value is None else range(int(m.value), int(m.value) + 1) for m in shown
    ]
    return set(itertools.product(*ranges))


def test_overlapping_requests_show_the_same_cells() -> None:
    """Two reports over overlapping ranges compute each shared period from the same
    counts, so the cells they both show are identical: nothing to difference."""
    counts = {"2026-01": 14, "2026-02": 3, "2026-03": 22, "2026-04": 9}
    first = {p: primary(people(counts[p]), RULES) for p in ("2026-01", "2026-02", "2026-03")}
    second = {p: primary(people(counts[p]), RULES) for p in ("2026-02", "2026-03", "2026-04")}
    assert all(first[p] == second[p] for p in ("2026-02", "2026-03"))


def test_a_group_naming_an_unknown_cell_is_a_programming_error() -> None:
    with pytest.raises(KeyError):
        protect({"t": people(10)}, [Group("t", ("missing",))], RULES)
