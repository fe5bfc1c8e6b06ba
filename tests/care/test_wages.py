"""The dated wage floors (care/wages.py)."""

from __future__ import annotations

import datetime as dt
from decimal import Decimal

from care.wages import NATIONAL_LIVING_WAGE, REAL_LIVING_WAGE_UK, floors_on, rate_on


def test_the_national_living_wage_changes_on_the_first_of_april() -> None:
    assert floors_on("E09000003", dt.date(2026, 3, 31)).national_living_wage == Decimal("12.21")
    assert floors_on("E09000003", dt.date(2026, 4, 1)).national_living_wage == Decimal("12.71")


def test_london_boroughs_get_the_london_real_living_wage() -> None:
    barnet = floors_on("E09000003", dt.date(2026, 11, 28))
    sheffield = floors_on("E08000019", dt.date(2026, 11, 28))
    assert barnet.london and barnet.real_living_wage == Decimal("14.80")
    assert not sheffield.london and sheffield.real_living_wage == Decimal("13.45")
    assert barnet.national_living_wage == sheffield.national_living_wage == Decimal("12.71")


def test_a_day_before_the_table_has_no_rate() -> None:
    assert rate_on(NATIONAL_LIVING_WAGE, dt.date(2020, 1, 1)) is None
    assert rate_on(REAL_LIVING_WAGE_UK, dt.date(2024, 10, 31)) == Decimal("12.00")


def test_the_tables_are_in_date_order_and_rates_only_rise() -> None:
    for table in (NATIONAL_LIVING_WAGE, REAL_LIVING_WAGE_UK):
        days = [d for d, _ in table]
        rates = [r for _, r in table]
        assert days == sorted(days) and rates == sorted(rates)
