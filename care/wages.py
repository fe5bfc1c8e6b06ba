"""The wage floors a council compares care pay against (market-shaping data).

A dated table kept in the code, because the rates change once a year and a report for a
past period must use the rates of that period. Sources (gov.uk for the National Living
Wage; the Living Wage Foundation for the Real Living Wage):

- National Living Wage (the legal minimum for workers aged 21 and over), from 1 April of
  each year: 2024 £11.44, 2025 £12.21, 2026 £12.71.
- Real Living Wage (voluntary, set by the Living Wage Foundation), UK and London rates,
  announced each October: 2023 £12.00 / £13.15, 2024 £12.60 / £13.85, 2025 £13.45 /
  £14.80. Employers are asked to pay a new rate by the following 1 May; this table
  applies each from 1 November of the year it was announced, and says so in reports.

London boroughs (GSS codes E09...) are compared with the London rate.
"""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass
from decimal import Decimal

# (from, hourly rate in pounds), oldest first.
NATIONAL_LIVING_WAGE: tuple[tuple[dt.date, Decimal], ...] = (
    (dt.date(2024, 4, 1), Decimal("11.44")),
    (dt.date(2025, 4, 1), Decimal("12.21")),
    (dt.date(2026, 4, 1), Decimal("12.71")),
)
REAL_LIVING_WAGE_UK: tuple[tuple[dt.date, Decimal], ...] = (
    (dt.date(2023, 11, 1), Decimal("12.00")),
    (dt.date(2024, 11, 1), Decimal("12.60")),
    (dt.date(2025, 11, 1), Decimal("13.45")),
)
REAL_LIVING_WAGE_LONDON: tuple[tuple[dt.date, Decimal], ...] = (
    (dt.date(2023, 11, 1), Decimal("13.15")),
    (dt.date(2024, 11, 1), Decimal("13.85")),
    (dt.date(2025, 11, 1), Decimal("14.80")),
)


def is_london(gss_code: str) -> bool:
    """London boroughs (and the City) have GSS codes starting E09."""
    return gss_code.startswith("E09")


def rate_on(table: tuple[tuple[dt.date, Decimal], ...], day: dt.date) -> Decimal | None:
    """The rate in force on `day`, or None before the table begins."""
    found: Decimal | None = None
    for start, rate in table:
        if start <= day:
            found = rate
        else:
            break
    return found


@dataclass(frozen=True)
class WageFloors:
    national_living_wage: Decimal | None
    real_living_wage: Decimal | None
    london: bool


def floors_on(gss_code: str, day: dt.date) -> WageFloors:
    """The National Living Wage and the Real Living Wage (London's for a London borough)
    in force on `day`."""
    london = is_london(gss_code)
    return WageFloors(
        national_living_wage=rate_on(NATIONAL_LIVING_WAGE, day),
        real_living_wage=rate_on(REAL_LIVING_WAGE_LONDON if london else REAL_LIVING_WAGE_UK, day),
        london=london,
    )
