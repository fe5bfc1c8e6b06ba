"""Market figures across the network (docs/market.md, "Across the network").

`networkMarketReport` asks every partner co-op whose partnership grants MARKET_DATA for its
figures *before* disclosure control (`peerMarketFigures`), adds them to ours, and only then
applies disclosure control, so a small count at one co-op and a small count at another
become one figure that may be shown. Partners are asked concurrently, each with a time
limit; one that is slow, down or answers nonsense is left out, never waited for beyond its
limit, and named in the answer.

The raw figures travel as JSON: counts, sums and histograms of whole numbers, bounded and
checked on arrival like any partner's answer (federation/sync.py does the same for feed
pages).
"""

from __future__ import annotations

import asyncio
import datetime as dt
from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass, field, fields
from typing import Any

from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncEngine, AsyncSession

from care.disclosure import DisclosureRules
from care.enums import PartnerScope, PartnershipStatus
from care.errors import DomainError, ErrorCode, forbidden
from care.market import (
    Granularity,
    MarketReport,
    RawCapacity,
    RawPeriod,
    build_report,
    check_reader,
    known_local_authority,
    local_figures,
    merge,
    merge_capacity,
    months_of,
    periods,
)
from care.models import Coop, Partnership
from care.viewer import Viewer
from federation.client import FederationClient, PartnerError, PartnerErrorCode
from federation.partners import record_contact, store_keys

QUERY = """
query ($la: String!, $from: Date!, $to: Date!, $g: Granularity!) {
  peerMarketFigures(localAuthority: $la, from: $from, to: $to, granularity: $g)
}"""

MAX_PERIODS = 200  # a quarterly report of 36 months sends 12 quarters and 36 months
MAX_KEYS = 10_000  # distinct values in one histogram, or breakdowns in one map
MAX_COUNT = 10**9


def _bad(message: str) -> PartnerError:
    return PartnerError(PartnerErrorCode.BAD_RESPONSE, f"Market figures: {message}")


# --- on the wire --------------------------------------------------------------------------


def _encode_period(raw: RawPeriod) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for f in fields(RawPeriod):
        value = getattr(raw, f.name)
        if isinstance(value, dt.date):
            out[f.name] = value.isoformat()
        elif isinstance(value, Counter):
            out[f.name] = {str(k): n for k, n in value.items()}
        elif isinstance(value, dict):
            out[f.name] = {k: list(v) if isinstance(v, tuple) else v for k, v in value.items()}
        else:
            out[f.name] = value
    return out


def encode(
    periods: Sequence[RawPeriod], months: Sequence[RawPeriod], capacity: RawCapacity
) -> dict[str, Any]:
    return {
        "version": 1,
        "periods": [_encode_period(p) for p in periods],
        "months": [_encode_period(p) for p in months],
        "capacity": {
            "free_pa_hours": capacity.free_pa_hours,
            "pas_with_free_time": capacity.pas_with_free_time,
            "referrals_waiting": capacity.referrals_waiting,
            "wait_days": {str(k): n for k, n in capacity.wait_days.items()},
        },
    }


def _number(value: Any, what: str, *, whole: bool = False) -> Any:
    if isinstance(value, bool) or not isinstance(value, int | float):
        raise _bad(f"{what} is not a number.")
    if whole and not isinstance(value, int):
        raise _bad(f"{what} is not a whole number.")
    if not -MAX_COUNT <= value <= MAX_COUNT:
        raise _bad(f"{what} is out of range.")
    return value


def _histogram(value: Any, what: str) -> Counter[int]:
    if not isinstance(value, dict) or len(value) > MAX_KEYS:
        raise _bad(f"{what} is not a histogram.")
    out: Counter[int] = Counter()
    for key, n in value.items():
        try:
            k = int(key)
        except (TypeError, ValueError) as exc:
            raise _bad(f"{what} has a key that is not a whole number.") from exc
        out[int(_number(k, what, whole=True))] = int(_number(n, what, whole=True))
    return out


def _mapping(value: Any, what: str, pairs: bool = False) -> dict[str, Any]:
    if not isinstance(value, dict) or len(value) > MAX_KEYS:
        raise _bad(f"{what} is not a map.")
    out: dict[str, Any] = {}
    for key, v in value.items():
        if not isinstance(key, str) or len(key) > 32:
            raise _bad(f"{what} has a bad key.")
        if pairs:
            if not isinstance(v, list) or len(v) != 2:
                raise _bad(f"{what} has a bad value.")
            out[key] = (float(_number(v[0], what)), int(_number(v[1], what, whole=True)))
        else:
            out[key] = _number(v, what)
    return out


def _decode_period(data: Any) -> RawPeriod:
    if not isinstance(data, dict):
        raise _bad("a period is not an object.")
    try:
        start = dt.date.fromisoformat(data["start"])
        end = dt.date.fromisoformat(data["end"])
    except (KeyError, TypeError, ValueError) as exc:
        raise _bad("a period has no valid start and end.") from exc
    raw = RawPeriod(start=start, end=end)
    for f in fields(RawPeriod):
        if f.name in ("start", "end"):
            continue
        value = data.get(f.name)
        current = getattr(raw, f.name)
        if isinstance(current, Counter):
            setattr(raw, f.name, _histogram(value, f.name))
        elif f.name in ("imported", "exported"):
            setattr(raw, f.name, _mapping(value, f.name, pairs=True))
        elif isinstance(current, dict):
            setattr(raw, f.name, _mapping(value, f.name))
        elif isinstance(current, float):
            setattr(raw, f.name, float(_number(value, f.name)))
        else:
            setattr(raw, f.name, int(_number(value, f.name, whole=True)))
    return raw


def decode(data: Any) -> tuple[list[RawPeriod], list[RawPeriod], RawCapacity]:
    """A partner's raw figures, checked: anything malformed is a BAD_RESPONSE."""
    if not isinstance(data, dict) or data.get("version") != 1:
        raise _bad("not version 1 figures.")
    periods, months = data.get("periods"), data.get("months")
    if not isinstance(periods, list) or not isinstance(months, list):
        raise _bad("no periods.")
    if len(periods) + len(months) > MAX_PERIODS:
        raise _bad("too many periods.")
    capacity = data.get("capacity")
    if not isinstance(capacity, dict):
        raise _bad("no capacity.")
    return (
        [_decode_period(p) for p in periods],
        [_decode_period(p) for p in months],
        RawCapacity(
            free_pa_hours=float(_number(capacity.get("free_pa_hours"), "free_pa_hours")),
            pas_with_free_time=int(
                _number(capacity.get("pas_with_free_time"), "pas_with_free_time", whole=True)
            ),
            referrals_waiting=int(
                _number(capacity.get("referrals_waiting"), "referrals_waiting", whole=True)
            ),
            wait_days=_histogram(capacity.get("wait_days"), "wait_days"),
        ),
    )


# --- asking the partners ----------------------------------------------------------------


@dataclass(frozen=True)
class Source:
    partnership_id: int | None  # None: this co-op
    name: str
    base_url: str


@dataclass
class Gathered:
    periods: list[list[RawPeriod]] = field(default_factory=list)
    months: list[list[RawPeriod]] = field(default_factory=list)
    capacity: list[RawCapacity] = field(default_factory=list)
    answered: list[Source] = field(default_factory=list)
    left_out: list[tuple[Source, str]] = field(default_factory=list)


async def market_partners(session: AsyncSession) -> list[Partnership]:
    rows = await session.scalars(
        select(Partnership)
        .where(
            Partnership.status == PartnershipStatus.ACTIVE.value,
            Partnership.granted_scopes.any(PartnerScope.MARKET_DATA.value),  # type: ignore[arg-type]
        )
        .order_by(Partnership.id)
    )
    return list(rows)


async def _ask(
    client: FederationClient,
    partner: Partnership,
    variables: dict[str, Any],
    expected: tuple[list[tuple[dt.date, dt.date]], list[tuple[dt.date, dt.date]]],
    limit_s: float,
) -> tuple[tuple[list[RawPeriod], list[RawPeriod], RawCapacity], list[dict[str, str]] | None]:
    try:
        result = await asyncio.wait_for(
            client.call(
                partner.graphql_endpoint,
                partner.keys,
                QUERY,
                variables,
                base_url=partner.base_url,
            ),
            limit_s,
        )
    except TimeoutError as exc:
        raise PartnerError(PartnerErrorCode.UNREACHABLE, f"no answer within {limit_s:g} s") from exc
    figures = decode(result.data.get("peerMarketFigures"))
    periods, months, _ = figures
    if [(p.start, p.end) for p in periods] != expected[0] or [
        (p.start, p.end) for p in months
    ] != expected[1]:
        raise _bad("the periods are not those asked for.")
    return figures, (result.refreshed.keys if result.refreshed else None)


async def gather_partners(
    engine: AsyncEngine,
    client: FederationClient,
    partners: Sequence[Partnership],
    variables: dict[str, Any],
    expected: tuple[list[tuple[dt.date, dt.date]], list[tuple[dt.date, dt.date]]],
    limit_s: float,
) -> Gathered:
    """Every partner's raw figures, asked concurrently, each within `limit_s` seconds;
    the outcome of each call is recorded on its partnership."""
    gathered = Gathered()
    outcomes = await asyncio.gather(
        *(_ask(client, p, variables, expected, limit_s) for p in partners),
        return_exceptions=True,
    )
    async with AsyncSession(engine) as session:
        for partner, outcome in zip(partners, outcomes, strict=True):
            source = Source(partner.id, partner.coop_name or partner.base_url, partner.base_url)
            if isinstance(outcome, PartnerError):
                gathered.left_out.append((source, outcome.summary()))
                await record_contact(session, partner.id, outcome)
                continue
            if isinstance(outcome, BaseException):
                raise outcome
            (periods, months, capacity), new_keys = outcome
            gathered.periods.append(periods)
            gathered.months.append(months)
            gathered.capacity.append(capacity)
            gathered.answered.append(source)
            await record_contact(session, partner.id)
            if new_keys is not None:
                await store_keys(session, partner.id, new_keys)
        await session.commit()
    return gathered


async def _may_have_raw_figures(session: AsyncSession, partnership_id: int | None) -> bool:
    """Figures before disclosure control go to partner *co-ops* only (their manifest
    presents a co-op), never to a council's own instance: councils get `marketReport`,
    protected, like their analysts."""
    if partnership_id is None:
        return False
    name = await session.scalar(
        select(Partnership.coop_name).where(Partnership.id == partnership_id)
    )
    return name is not None


async def figures_for_partner(
    session: AsyncSession,
    viewer: Viewer,
    la_code: str,
    start: dt.date,
    end: dt.date,
    granularity: Granularity,
) -> dict[str, Any]:
    """`peerMarketFigures`: our raw figures, for a partner co-op only."""
    if not await _may_have_raw_figures(session, viewer.partnership_id):
        raise forbidden("Figures before disclosure control go to partner co-ops only.")
    if await known_local_authority(session, la_code) is None:
        raise DomainError(
            ErrorCode.NOT_FOUND, "No local authority with that GSS code.", "localAuthority"
        )
    local = await local_figures(session, la_code, start, end, granularity)
    return encode(local.periods, local.months, local.capacity)


@dataclass(frozen=True)
class NetworkReport:
    report: MarketReport
    la_name: str
    answered: list[Source]
    left_out: list[tuple[Source, str]]


async def network_report(
    session: AsyncSession,
    client: FederationClient | None,
    viewer: Viewer,
    la_code: str,
    span: tuple[dt.date, dt.date, Granularity],
    rules: DisclosureRules,
    limit_s: float,
) -> NetworkReport:
    """`networkMarketReport`: ours plus every MARKET_DATA partner co-op's that answers in
    time, added up, then protected. Who may ask is marketReport's rule."""
    start, end, granularity = span
    la_name = await check_reader(session, viewer, la_code)
    partners = await market_partners(session)
    own = await session.scalar(select(Coop.name))
    # The partners are asked while our own figures are computed.
    local_task = local_figures(session, la_code, start, end, granularity)
    spans = periods(start, end, granularity)
    month_spans = (
        [m for s in spans for m in months_of(s)] if granularity is Granularity.QUARTER else []
    )
    expected = (spans, month_spans)
    variables = {
        "la": la_code,
        "from": start.isoformat(),
        "to": end.isoformat(),
        "g": granularity.value,
    }
    engine = session.bind
    gathered = Gathered()
    if partners and client is not None and isinstance(engine, AsyncEngine):
        asked = asyncio.create_task(
            gather_partners(engine, client, partners, variables, expected, limit_s)
        )
        local = await local_task
        gathered = await asked
    else:
        local = await local_task
        gathered.left_out = [
            (Source(p.id, p.coop_name or p.base_url, p.base_url), "no federation client")
            for p in partners
        ]
    merged_months = merge([local.months, *gathered.months]) if local.months else []
    report = build_report(
        la_code,
        granularity,
        merge([local.periods, *gathered.periods]),
        {m.start: m for m in merged_months},
        merge_capacity([local.capacity, *gathered.capacity]),
        rules,
    )
    me = Source(None, own or "this co-op", client.own_base_url if client else "")
    return NetworkReport(report, la_name, [me, *gathered.answered], gathered.left_out)
