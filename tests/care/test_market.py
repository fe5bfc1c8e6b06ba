"""Market figures (care/market.py) on constructed data: every figure's definition, then
disclosure control on the same data."""

from __future__ import annotations

import datetime as dt
import uuid
from decimal import Decimal
from typing import Any
from zoneinfo import ZoneInfo

import pytest
from sqlalchemy import text
from sqlalchemy.dialects.postgresql import Range
from sqlalchemy.ext.asyncio import AsyncSession

from care.disclosure import DisclosureRules, Withheld
from care.market import (
    Granularity,
    Measure,
    market_report,
    percentile,
    periods,
)
from care.models import (
    CoverExchange,
    CoverRequest,
    LocalAuthority,
    Partnership,
    Referral,
)
from tests.factories import BARNET, ENFIELD, Build, at

LONDON = ZoneInfo("Europe/London")
HARINGEY = "E09000014"
RAW = DisclosureRules(min_people=1, rounding_base=1)  # nothing withheld, nothing rounded
SEP = dt.date(2026, 9, 1)


def sep(day: int, hour: int) -> dt.datetime:
    return dt.datetime(2026, 9, day, hour, tzinfo=LONDON)


@pytest.fixture
async def world(db: AsyncSession) -> dict[str, Any]:
    b = Build(db)
    await b.las()
    db.add(LocalAuthority(gss_code=HARINGEY, name="Haringey"))
    await b.coop()
    cluster = await b.cluster("Finchley")
    other_la = await b.cluster("Enfield Town", la=ENFIELD)
    await db.execute(text("UPDATE cluster SET created_at = '2026-01-01'"))
    pas = [await b.pa(f"Pat {i}", cluster=cluster) for i in range(10)]
    leaver = await b.pa("Lee Leaver", cluster=cluster)
    await db.execute(text("UPDATE member SET joined_on = '2025-01-01'"))
    await db.execute(text("UPDATE member SET active = false WHERE id = :id"), {"id": leaver.id})
    await db.execute(
        text("UPDATE member SET left_on = '2026-06-01' WHERE id = :id"), {"id": leaver.id}
    )
    # Pay from 2025: eight PAs at £13.00, two at £15.00.
    await db.execute(text("UPDATE pa_pay_rate SET effective_from = '2025-01-01'"))
    await db.execute(
        text("UPDATE pa_pay_rate SET hourly_pay_pence = 1500 WHERE pa_id = ANY(:ids)"),
        {"ids": [pas[8].id, pas[9].id]},
    )
    await db.execute(
        text("UPDATE pa_pay_rate SET hourly_pay_pence = 1300 WHERE NOT pa_id = ANY(:ids)"),
        {"ids": [pas[8].id, pas[9].id]},
    )
    people = [await b.service_user(f"Person {i}", cluster=cluster) for i in range(12)]
    await db.execute(
        text("UPDATE service_user_profile SET funding = 'SELF_FUNDED' WHERE member_id = ANY(:ids)"),
        {"ids": [p.id for p in people[9:]]},
    )
    elsewhere = await b.service_user("Elsie Enfield", cluster=other_la)
    completed = []
    for i, person in enumerate(people):
        regular, other = pas[i % 10], pas[(i + 1) % 10]
        await b.regular(person, regular)
        for day, pa in ((3, regular), (10, other)):
            v = await b.visit(person, pa, sep(day, 9 + i % 8), status="COMPLETED")
            completed.append(v)
    await db.execute(
        text("UPDATE visit SET confirmed_at = now(), confirmed_by_id = service_user_id")
    )
    await b.visit(people[0], pas[0], sep(20, 9), status="MISSED")
    await b.visit(people[1], pas[1], sep(21, 9), minutes=30, status="CANCELLED")
    await b.visit(people[2], None, sep(22, 9), minutes=90, status="NEEDS_COVER")
    await b.visit(elsewhere, pas[0], sep(23, 9), minutes=600, status="COMPLETED")  # Enfield
    # Nine cover requests opened in September; eight filled after 30, 60, ... 240 minutes.
    for n, visit in enumerate(completed[:18:2][:9]):
        opened = sep(1, 8) + dt.timedelta(hours=n)
        filled = n < 8
        db.add(
            CoverRequest(
                visit_id=visit.id,
                reason="MANUAL",
                status="FILLED" if filled else "CANCELLED",
                opened_at=opened,
                closed_at=opened + dt.timedelta(minutes=30 * (n + 1)),
                filled_by_pa_id=visit.pa_id if filled else None,
            )
        )
    # Two hours of Person 3's visit covered by a co-op in Haringey.
    partnership = Partnership(
        base_url="https://haringey.example",
        graphql_endpoint="https://haringey.example/graphql",
        proposal_ref=uuid.uuid4(),
        direction="OUTGOING",
        status="ACTIVE",
        requested_scopes=["COVER"],
        granted_scopes=["COVER"],
        protocol_version="coopnet-federation/1",
        home_la_code=HARINGEY,
    )
    db.add(partnership)
    await db.flush()
    covered = await b.visit(people[3], None, sep(25, 9), minutes=120, status="SCHEDULED")
    db.add(
        CoverExchange(
            ref=uuid.uuid4(),
            partnership_id=partnership.id,
            side="REQUESTING",
            status="CONFIRMED",
            during=Range(sep(25, 9), sep(25, 11), bounds="[)"),
            district="N12",
            skills=[],
            pa_ref="abc",
            hold_expires_at=sep(24, 9),
            visit_id=covered.id,
        )
    )
    # Capacity: two PAs free tomorrow for 4 hours each; one has a 1-hour visit in it.
    tomorrow = at(days=1).replace(minute=0)
    await b.window(pas[0], tomorrow, hours=4)
    await b.window(pas[1], tomorrow, hours=4)
    await b.visit(people[0], pas[1], tomorrow + dt.timedelta(hours=1))
    today = dt.datetime.now(LONDON).date()
    for days in (10, 20, 40):
        db.add(
            Referral(
                la_code=BARNET,
                postcode_district="N12",
                hours_per_week=Decimal("5"),
                referred_on=today - dt.timedelta(days=days),
            )
        )
    await db.commit()
    return {"pas": pas, "people": people}


def by_measure(figures: Any) -> dict[tuple[Measure, str | None], Any]:
    return {(f.measure, f.breakdown): f.shown for f in figures}


async def test_every_figure_as_defined(db: AsyncSession, world: dict[str, Any]) -> None:
    report = await market_report(db, BARNET, SEP, SEP, Granularity.MONTH, RAW)
    [september] = report.periods
    assert (september.start, september.end) == (SEP, dt.date(2026, 10, 1))
    f = {k: v.value for k, v in by_measure(september.figures).items()}
    assert f[(Measure.COOPS_ACTIVE, None)] == 1
    assert f[(Measure.CLUSTERS, "GEOGRAPHIC")] == 1  # Enfield's cluster is not Barnet's
    assert f[(Measure.PEOPLE_SUPPORTED, None)] == 12
    assert f[(Measure.PEOPLE_SUPPORTED, "DIRECT_PAYMENT")] == 9
    assert f[(Measure.PEOPLE_SUPPORTED, "SELF_FUNDED")] == 3
    assert f[(Measure.PEOPLE_SUPPORTED, "NHS_CHC")] == 0
    # 24 one-hour visits delivered, 1 h missed, 1.5 h needing cover when due, 2 h of the
    # partner-covered visit still scheduled; the cancelled half hour is not planned.
    assert f[(Measure.HOURS_PLANNED, None)] == 24 + 1 + 1.5 + 2
    assert f[(Measure.HOURS_DELIVERED, None)] == 24
    assert f[(Measure.HOURS_MISSED, None)] == 1
    assert f[(Measure.HOURS_CANCELLED, None)] == 0.5
    assert f[(Measure.HOURS_UNMET, None)] == 1.5
    assert f[(Measure.COVER_REQUESTS_OPENED, None)] == 9
    assert f[(Measure.COVER_REQUESTS_FILLED, None)] == 8
    assert f[(Measure.COVER_FILL_RATE, None)] == round(8 / 9, 3)
    assert f[(Measure.MEDIAN_HOURS_TO_FILL, None)] == 2.25  # (120 + 150) / 2 minutes
    assert f[(Measure.COVER_HOURS_IMPORTED, HARINGEY)] == 2
    assert f[(Measure.MEDIAN_DISTINCT_PAS_PER_28_DAYS, None)] == 2
    assert f[(Measure.REGULAR_PA_SHARE, None)] == 0.5
    assert f[(Measure.PA_HEADCOUNT, None)] == 10  # the leaver left before September
    assert f[(Measure.PA_FTE, None)] == 8.0  # 10 x 30 h / 37.5
    assert f[(Measure.MEDIAN_HOURLY_PAY, None)] == 13.0
    assert f[(Measure.LOWER_QUARTILE_HOURLY_PAY, None)] == 13.0
    assert f[(Measure.PAS_BELOW_REAL_LIVING_WAGE, None)] == 8  # London: £14.80
    assert f[(Measure.NATIONAL_LIVING_WAGE, None)] == 12.71
    assert f[(Measure.REAL_LIVING_WAGE, "LONDON")] == 14.80
    assert f[(Measure.PA_LEAVERS_LAST_12_MONTHS, None)] == 1
    capacity = {k: v.value for k, v in by_measure(report.capacity).items()}
    assert capacity[(Measure.FREE_PA_HOURS_NEXT_4_WEEKS, None)] == 7
    assert capacity[(Measure.REFERRALS_WAITING, None)] == 3
    assert capacity[(Measure.MEDIAN_REFERRAL_WAIT_DAYS, None)] == 20


async def test_the_same_data_under_disclosure_control(
    db: AsyncSession, world: dict[str, Any]
) -> None:
    report = await market_report(db, BARNET, SEP, SEP, Granularity.MONTH, DisclosureRules())
    s = by_measure(report.periods[0].figures)
    assert (
        s[(Measure.PEOPLE_SUPPORTED, None)].value == 10
        and s[(Measure.PEOPLE_SUPPORTED, None)].rounded
    )
    assert s[(Measure.PEOPLE_SUPPORTED, "SELF_FUNDED")].withheld is Withheld.SMALL_COUNT
    # 12 = 9 + 3: with the total shown, the 9 would give the 3 away.
    assert s[(Measure.PEOPLE_SUPPORTED, "DIRECT_PAYMENT")].withheld is Withheld.SECONDARY
    assert s[(Measure.PEOPLE_SUPPORTED, "NHS_CHC")].value == 0
    for measure in (Measure.HOURS_MISSED, Measure.HOURS_CANCELLED, Measure.HOURS_UNMET):
        assert s[(measure, None)].withheld is Withheld.FEW_PEOPLE  # one person each
    assert s[(Measure.COVER_HOURS_IMPORTED, HARINGEY)].withheld is Withheld.FEW_PEOPLE
    assert s[(Measure.HOURS_DELIVERED, None)].value == 24  # twelve people
    assert s[(Measure.COVER_REQUESTS_OPENED, None)].value == 9  # nine people
    assert s[(Measure.PA_HEADCOUNT, None)].value == 10
    assert s[(Measure.PA_LEAVERS_LAST_12_MONTHS, None)].withheld is Withheld.SMALL_COUNT
    assert s[(Measure.COOPS_ACTIVE, None)].value == 1  # providers: never withheld
    assert s[(Measure.CLUSTERS, "GEOGRAPHIC")].value == 1
    capacity = by_measure(report.capacity)
    assert capacity[(Measure.REFERRALS_WAITING, None)].withheld is Withheld.SMALL_COUNT
    assert capacity[(Measure.FREE_PA_HOURS_NEXT_4_WEEKS, None)].withheld is Withheld.FEW_PEOPLE


async def test_a_quarter_hides_what_one_of_its_months_hides(
    db: AsyncSession, world: dict[str, Any]
) -> None:
    """Eight people missed a visit in July and one in September: the quarter's nine are
    enough on their own, but July's figure and the quarter's would give September's away
    (the months are asked for separately): the quarter withholds it."""
    b = Build(db)
    people, pas = world["people"], world["pas"]
    for i in range(8):
        await b.visit(
            people[i + 3], pas[i], dt.datetime(2026, 7, 6 + i, 9, tzinfo=LONDON), status="MISSED"
        )
    await db.commit()
    rules = DisclosureRules()
    months = await market_report(db, BARNET, dt.date(2026, 7, 1), SEP, Granularity.MONTH, rules)
    july, august, september = (by_measure(p.figures) for p in months.periods)
    assert july[(Measure.HOURS_MISSED, None)].value == 8
    assert august[(Measure.HOURS_MISSED, None)].value == 0
    assert september[(Measure.HOURS_MISSED, None)].withheld is Withheld.FEW_PEOPLE
    quarters = await market_report(db, BARNET, SEP, SEP, Granularity.QUARTER, rules)
    [q3] = quarters.periods
    assert (q3.start, q3.end) == (dt.date(2026, 7, 1), dt.date(2026, 10, 1))
    assert by_measure(q3.figures)[(Measure.HOURS_MISSED, None)].withheld is Withheld.SECONDARY
    raw_q3 = await market_report(db, BARNET, SEP, SEP, Granularity.QUARTER, RAW)
    assert by_measure(raw_q3.periods[0].figures)[(Measure.HOURS_MISSED, None)].value == 9


async def test_overlapping_requests_show_identical_cells(
    db: AsyncSession, world: dict[str, Any]
) -> None:
    rules = DisclosureRules()
    a = await market_report(db, BARNET, dt.date(2026, 8, 15), SEP, Granularity.MONTH, rules)
    b = await market_report(
        db, BARNET, dt.date(2026, 9, 30), dt.date(2026, 10, 2), Granularity.MONTH, rules
    )
    assert a.periods[-1].start == b.periods[0].start == SEP
    assert a.periods[-1].figures == b.periods[0].figures


def test_periods_snap_to_whole_months_and_quarters() -> None:
    assert periods(dt.date(2026, 2, 14), dt.date(2026, 3, 2), Granularity.MONTH) == [
        (dt.date(2026, 2, 1), dt.date(2026, 3, 1)),
        (dt.date(2026, 3, 1), dt.date(2026, 4, 1)),
    ]
    assert periods(dt.date(2026, 5, 31), dt.date(2026, 12, 31), Granularity.QUARTER) == [
        (dt.date(2026, 4, 1), dt.date(2026, 7, 1)),
        (dt.date(2026, 7, 1), dt.date(2026, 10, 1)),
        (dt.date(2026, 10, 1), dt.date(2027, 1, 1)),
    ]


def test_percentiles_interpolate_like_postgresql() -> None:
    assert percentile({}, 0.5) is None
    assert percentile({5: 1}, 0.5) == 5
    assert percentile({1: 1, 2: 1, 3: 1, 4: 1}, 0.5) == 2.5
    assert percentile({1300: 8, 1500: 2}, 0.25) == 1300
    assert percentile({1: 1, 10: 1}, 0.25) == pytest.approx(3.25)
