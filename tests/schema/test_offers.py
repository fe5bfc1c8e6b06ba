"""Cover offers through the API: offering to PAs, a cluster or a pool (candidates only),
withdrawing, and the PA's accept or decline; each refusal with its code and field and the
database unchanged; and the events published on commit."""

from __future__ import annotations

import base64
import datetime as dt
from dataclasses import dataclass
from typing import Any

import pytest
from sqlalchemy import delete, func, select, update
from sqlalchemy.dialects.postgresql import Range
from sqlalchemy.ext.asyncio import AsyncSession

from care.enums import Role
from care.models import (
    Absence,
    AvailabilityWindow,
    Cluster,
    ClusterPa,
    Coop,
    CoverOffer,
    CoverRequest,
    Member,
    Visit,
)
from tests.conftest import Api, StatementCounter
from tests.factories import Build, at, gid
from tests.live_events import committed_since, latest

ERRORS = "errors { field message code }"
OFFER_FIELDS = """id status offeredAt expiresAt respondedAt personalAssistant { id name }
    coverRequest { id status filledBy { id } visit { id status pa { id } } }"""

OFFER = f"""mutation($input: OfferCoverInput!) {{
  offerCover(input: $input) {{ offers {{ {OFFER_FIELDS} }} skipped {ERRORS} }} }}"""
ACCEPT = f"""mutation($id: ID!) {{
  acceptCoverOffer(id: $id) {{ offer {{ {OFFER_FIELDS} }} {ERRORS} }} }}"""
DECLINE = f"""mutation($id: ID!) {{
  declineCoverOffer(id: $id) {{ offer {{ {OFFER_FIELDS} }} {ERRORS} }} }}"""
WITHDRAW = f"""mutation($id: ID!) {{
  withdrawCoverOffer(id: $id) {{ offer {{ {OFFER_FIELDS} }} {ERRORS} }} }}"""
MY_OFFERS = "{ myCoverOffers(first: 50) { totalCount nodes { id status } } }"


@dataclass
class World:
    coordinator: Member
    other_coordinator: Member
    su: Member
    other_su: Member
    pa: Member  # team PA, free
    pa2: Member  # team PA, free
    busy_pa: Member  # team PA with another visit at that time
    split_pa: Member  # team PA whose two adjacent windows cover the visit only together
    away_pa: Member  # team PA on holiday then
    pool_pa: Member  # pool PA, free
    outsider: Member  # another cluster's PA, free
    unskilled: Member  # free, but without the skill the person needs
    cluster: Cluster
    pool_id: int
    visit: Visit
    request: CoverRequest
    start: dt.datetime


async def open_request(db: AsyncSession, visit: Visit, reason: str = "MANUAL") -> CoverRequest:
    request = CoverRequest(visit_id=visit.id, reason=reason, status="OPEN")
    db.add(request)
    await db.flush()
    return request


@pytest.fixture
async def w(db: AsyncSession) -> World:
    b = Build(db)
    await b.las()
    await b.coop()
    coordinator = await b.worker("Cora Ordinator")
    other_coordinator = await b.worker("Otto Ordinator")
    cluster = await b.cluster("Finchley", support_worker=coordinator)
    other = await b.cluster("Barnet East", support_worker=other_coordinator)
    su = await b.service_user("Ada User", cluster=cluster)
    other_su = await b.service_user("Bob Other", cluster=other, email="bob@example.org")
    skills = ["personal-care"]  # what the service users need
    pa = await b.pa("Pat Near", cluster=cluster, skills=skills)
    pa2 = await b.pa("Pam Team", cluster=cluster, skills=skills)
    busy_pa = await b.pa("Bea Busy", cluster=cluster, skills=skills)
    split_pa = await b.pa("Sue Split", cluster=cluster, skills=skills)
    away_pa = await b.pa("Al Away", cluster=cluster, skills=skills)
    pool_pa = await b.pa("Polly Pool", skills=skills)
    outsider = await b.pa("Sid Stranger", cluster=other, skills=skills)
    unskilled = await b.pa("Nat Newcomer")
    pool = await b.pool("North pool", pas=[pool_pa, split_pa], clusters=[cluster])
    start = at(days=2)
    for p in (pa, pa2, busy_pa, away_pa, pool_pa, outsider, unskilled):
        await b.window(p, start - dt.timedelta(hours=1), hours=4)
    # Two adjacent windows that cover the visit only together: one window must contain it.
    await b.window(split_pa, start - dt.timedelta(hours=2), hours=2.5)
    await b.window(split_pa, start + dt.timedelta(minutes=30), hours=1)
    await b.visit(other_su, busy_pa, start + dt.timedelta(minutes=30))
    db.add(
        Absence(
            pa_id=away_pa.id,
            kind="HOLIDAY",
            during=Range(start - dt.timedelta(days=1), start + dt.timedelta(days=1), bounds="[)"),
        )
    )
    visit = await b.visit(su, None, start, status="NEEDS_COVER")
    request = await open_request(db, visit)
    await db.commit()
    return World(
        coordinator,
        other_coordinator,
        su,
        other_su,
        pa,
        pa2,
        busy_pa,
        split_pa,
        away_pa,
        pool_pa,
        outsider,
        unskilled,
        cluster,
        pool.id,
        visit,
        request,
        start,
    )


# --- helpers -------------------------------------------------------------------------------


def coord(api: Api, w: World) -> str:
    return api.token(Role.COORDINATOR, w.coordinator.id)


def pa_token(api: Api, pa: Member) -> str:
    return api.token(Role.PA, pa.id)


def pa_gid(pa: Member) -> str:
    return gid("PersonalAssistant", pa.id)


def pk(global_id: str) -> int:
    return int(base64.b64decode(global_id).decode().split(":")[1])


async def offer(api: Api, token: str, request_id: int, **target: Any) -> dict[str, Any]:
    data: dict[str, Any] = {"coverRequestId": gid("CoverRequest", request_id), **target}
    out: dict[str, Any] = (await api.data(OFFER, {"input": data}, token=token))["offerCover"]
    return out


async def offer_to(api: Api, w: World, *pas: Member, **extra: Any) -> list[str]:
    out = await offer(api, coord(api, w), w.request.id, paIds=[pa_gid(p) for p in pas], **extra)
    assert out["errors"] == [], out["errors"]
    return [o["id"] for o in out["offers"]]


async def answer(api: Api, mutation: str, offer_id: str, token: str) -> dict[str, Any]:
    name = {
        ACCEPT: "acceptCoverOffer",
        DECLINE: "declineCoverOffer",
        WITHDRAW: "withdrawCoverOffer",
    }
    out: dict[str, Any] = (await api.data(mutation, {"id": offer_id}, token=token))[name[mutation]]
    return out


def only_error(payload: dict[str, Any]) -> dict[str, Any]:
    assert payload.get("offer") is None and not payload.get("offers")
    assert len(payload["errors"]) == 1, payload["errors"]
    error: dict[str, Any] = payload["errors"][0]
    return error


async def snapshot(db: AsyncSession) -> dict[str, list[tuple[Any, ...]]]:
    """Every visit, cover request and offer as plain values."""
    visits = await db.execute(
        select(Visit.id, Visit.pa_id, Visit.status, func.lower(Visit.during)).order_by(Visit.id)
    )
    requests = await db.execute(
        select(
            CoverRequest.id,
            CoverRequest.status,
            CoverRequest.filled_by_pa_id,
            CoverRequest.closed_at,
        ).order_by(CoverRequest.id)
    )
    offers = await db.execute(
        select(
            CoverOffer.id,
            CoverOffer.cover_request_id,
            CoverOffer.pa_id,
            CoverOffer.status,
            CoverOffer.expires_at,
            CoverOffer.responded_at,
        ).order_by(CoverOffer.id)
    )
    out = {
        "visits": [tuple(r) for r in visits.all()],
        "requests": [tuple(r) for r in requests.all()],
        "offers": [tuple(r) for r in offers.all()],
    }
    await db.commit()  # end the read so the next one sees later commits
    return out


async def offer_rows(db: AsyncSession) -> list[tuple[int, int, str]]:
    rows = (await snapshot(db))["offers"]
    return [(r[0], r[2], r[3]) for r in rows]


# --- offering ------------------------------------------------------------------------------


async def test_offer_to_candidates_reads_back(api: Api, db: AsyncSession, w: World) -> None:
    out = await offer(api, coord(api, w), w.request.id, paIds=[pa_gid(w.pa), pa_gid(w.pa2)])
    assert out["errors"] == []
    assert out["skipped"] == 0
    offers = out["offers"]
    assert [o["personalAssistant"]["name"] for o in offers] == ["Pat Near", "Pam Team"]
    assert {o["status"] for o in offers} == {"OPEN"}
    assert all(o["respondedAt"] is None for o in offers)
    lasts = dt.datetime.fromisoformat(offers[0]["expiresAt"]) - dt.datetime.fromisoformat(
        offers[0]["offeredAt"]
    )
    assert lasts == dt.timedelta(minutes=120)  # the co-op's default
    assert offers[0]["coverRequest"]["status"] == "OPEN"
    assert [(r[1], r[2]) for r in await offer_rows(db)] == [(w.pa.id, "OPEN"), (w.pa2.id, "OPEN")]

    # The PA sees the open offer, and the visit it is for.
    mine = (await api.data(MY_OFFERS, token=pa_token(api, w.pa)))["myCoverOffers"]
    assert [n["id"] for n in mine["nodes"]] == [offers[0]["id"]]
    node = await api.data(
        f'{{ node(id: "{offers[0]["id"]}") {{ ... on CoverOffer {{ {OFFER_FIELDS} }} }} }}',
        token=pa_token(api, w.pa),
    )
    assert node["node"]["coverRequest"]["visit"]["id"] == gid("Visit", w.visit.id)


async def test_expiry_uses_the_coops_setting_or_the_input(
    api: Api, db: AsyncSession, w: World
) -> None:
    await db.execute(update(Coop).values(cover_offer_ttl_minutes=45))
    await db.commit()
    [first] = (await offer(api, coord(api, w), w.request.id, paIds=[pa_gid(w.pa)]))["offers"]
    [second] = (
        await offer(api, coord(api, w), w.request.id, paIds=[pa_gid(w.pa2)], expiresInMinutes=5)
    )["offers"]
    for o, minutes in ((first, 45), (second, 5)):
        lasts = dt.datetime.fromisoformat(o["expiresAt"]) - dt.datetime.fromisoformat(
            o["offeredAt"]
        )
        assert lasts == dt.timedelta(minutes=minutes)

    # A co-op setting outside 5 minutes to 7 days is not used: the caller must give one.
    await db.execute(update(Coop).values(cover_offer_ttl_minutes=2))
    await db.commit()
    before = await snapshot(db)
    error = only_error(await offer(api, coord(api, w), w.request.id, paIds=[pa_gid(w.outsider)]))
    assert (error["code"], error["field"]) == ("INVALID", "expiresInMinutes")
    assert await snapshot(db) == before


async def test_offer_to_non_candidates_is_invalid_and_writes_nothing(
    api: Api, db: AsyncSession, w: World
) -> None:
    before = await snapshot(db)
    out = await offer(
        api,
        coord(api, w),
        w.request.id,
        paIds=[pa_gid(p) for p in (w.pa, w.busy_pa, w.away_pa, w.split_pa, w.unskilled)],
    )
    error = only_error(out)
    assert (error["code"], error["field"]) == ("INVALID", "paIds")
    assert error["message"].startswith(
        "Not candidates for this visit, so nothing was offered: "
        "Bea Busy, Sue Split, Al Away, Nat Newcomer."
    )
    assert "Pat Near" not in error["message"]
    assert await snapshot(db) == before

    # Without availability covering the whole visit (a window ending before it does).
    await db.execute(
        update(Visit)
        .where(Visit.id == w.visit.id)
        .values(during=Range(w.start, w.start + dt.timedelta(hours=4), bounds="[)"))
    )
    await db.commit()
    error = only_error(await offer(api, coord(api, w), w.request.id, paIds=[pa_gid(w.pa)]))
    assert error["code"] == "INVALID"
    assert "Pat Near" in error["message"]
    assert (await snapshot(db))["offers"] == []


async def test_offer_to_a_cluster_skips_non_candidates(
    api: Api, db: AsyncSession, w: World
) -> None:
    out = await offer(api, coord(api, w), w.request.id, clusterId=gid("Cluster", w.cluster.id))
    assert out["errors"] == []
    names = sorted(o["personalAssistant"]["name"] for o in out["offers"])
    # Bea is busy, Al away and Sue has no single window containing the visit.
    assert names == ["Pam Team", "Pat Near"]
    assert out["skipped"] == 3
    assert sorted(r[1] for r in await offer_rows(db)) == sorted([w.pa.id, w.pa2.id])

    # Again: everyone eligible already holds an open offer.
    again = await offer(api, coord(api, w), w.request.id, clusterId=gid("Cluster", w.cluster.id))
    assert again["errors"] == [] and again["offers"] == []
    assert again["skipped"] == 5
    assert len(await offer_rows(db)) == 2


SKIPPED = f"""mutation($input: OfferCoverInput!) {{
  offerCover(input: $input) {{ offers {{ personalAssistant {{ name }} }} skipped
    skippedPas {{ pa {{ name }} reason rules missingSkills }} skippedByRule {{ rule pas }}
    {ERRORS} }} }}"""


async def test_offer_to_a_cluster_says_why_each_pa_was_skipped(
    api: Api, db: AsyncSession, w: World, sql_counter: StatementCounter
) -> None:
    # The newcomer joins the team: free, but without the skill the person needs.
    db.add(ClusterPa(cluster_id=w.cluster.id, pa_id=w.unskilled.id))
    await db.commit()
    data = {"coverRequestId": gid("CoverRequest", w.request.id)}
    data["clusterId"] = gid("Cluster", w.cluster.id)
    out = (await api.data(SKIPPED, {"input": data}, token=coord(api, w)))["offerCover"]
    assert out["errors"] == []
    assert sorted(o["personalAssistant"]["name"] for o in out["offers"]) == [
        "Pam Team",
        "Pat Near",
    ]
    assert out["skipped"] == 4
    why = {p["pa"]["name"]: (p["reason"], p["rules"]) for p in out["skippedPas"]}
    assert why == {
        "Bea Busy": ("NOT_A_CANDIDATE", ["OVERLAP"]),
        "Al Away": ("NOT_A_CANDIDATE", ["ABSENT"]),
        "Sue Split": ("NOT_A_CANDIDATE", ["NO_AVAILABILITY"]),
        "Nat Newcomer": ("NOT_A_CANDIDATE", ["MISSING_SKILL"]),
    }
    newcomer = next(p for p in out["skippedPas"] if p["pa"]["name"] == "Nat Newcomer")
    assert newcomer["missingSkills"] == ["personal-care"]
    assert {c["rule"]: c["pas"] for c in out["skippedByRule"]} == {
        "NO_AVAILABILITY": 1,
        "OVERLAP": 1,
        "ABSENT": 1,
        "MISSING_SKILL": 1,
    }

    # Again: the two candidates already hold open offers. The reasons take one statement
    # however many PAs are skipped.
    sql_counter.count = 0
    again = (await api.data(SKIPPED, {"input": data}, token=coord(api, w)))["offerCover"]
    first_count = sql_counter.count
    assert again["offers"] == [] and again["skipped"] == 6
    reasons = {p["pa"]["name"]: p["reason"] for p in again["skippedPas"]}
    assert reasons["Pat Near"] == reasons["Pam Team"] == "ALREADY_OFFERED"
    assert sum(r == "NOT_A_CANDIDATE" for r in reasons.values()) == 4
    assert {c["rule"]: c["pas"] for c in again["skippedByRule"]}["OVERLAP"] == 1
    for name in ("Tess One", "Tess Two", "Tess Three"):
        db.add(ClusterPa(cluster_id=w.cluster.id, pa_id=(await Build(db).pa(name)).id))
    await db.commit()
    sql_counter.count = 0
    third = (await api.data(SKIPPED, {"input": data}, token=coord(api, w)))["offerCover"]
    assert third["skipped"] == 9
    assert sql_counter.count == first_count, sql_counter.statements


async def test_offer_to_a_pool(api: Api, db: AsyncSession, w: World) -> None:
    out = await offer(api, coord(api, w), w.request.id, poolId=gid("Pool", w.pool_id))
    assert out["errors"] == []
    assert [o["personalAssistant"]["name"] for o in out["offers"]] == ["Polly Pool"]
    assert out["skipped"] == 1


async def test_an_open_offer_is_not_repeated_but_a_lapsed_one_is(
    api: Api, db: AsyncSession, w: World
) -> None:
    [first] = await offer_to(api, w, w.pa)
    out = await offer(api, coord(api, w), w.request.id, paIds=[pa_gid(w.pa), pa_gid(w.pa2)])
    assert out["errors"] == []
    assert [o["personalAssistant"]["name"] for o in out["offers"]] == ["Pam Team"]
    assert out["skipped"] == 1

    # Once the first offer has lapsed, Pat can be offered the cover again.
    await db.execute(
        update(CoverOffer)
        .where(CoverOffer.id == pk(first))
        .values(
            offered_at=func.now() - dt.timedelta(hours=3),
            expires_at=func.now() - dt.timedelta(hours=1),
        )
    )
    await db.commit()
    [again] = await offer_to(api, w, w.pa)
    assert again != first
    rows = await offer_rows(db)
    assert [(r[1], r[2]) for r in rows if r[1] == w.pa.id] == [
        (w.pa.id, "EXPIRED"),
        (w.pa.id, "OPEN"),
    ]


BAD_OFFERS = [
    # (name, input change, code, field)
    ("no_target", {}, "REQUIRED", "paIds"),
    ("empty_pa_list", {"paIds": []}, "REQUIRED", "paIds"),
    ("two_targets", {"paIds": ["PA"], "poolId": "POOL"}, "INVALID", "poolId"),
    ("ttl_too_short", {"paIds": ["PA"], "expiresInMinutes": 4}, "INVALID", "expiresInMinutes"),
    (
        "ttl_too_long",
        {"paIds": ["PA"], "expiresInMinutes": 7 * 24 * 60 + 1},
        "INVALID",
        "expiresInMinutes",
    ),
    ("unknown_pa", {"paIds": [gid("PersonalAssistant", 999999)]}, "NOT_FOUND", "paIds"),
    ("pa_id_of_another_type", {"paIds": [gid("Cluster", 1)]}, "NOT_FOUND", "paIds"),
    ("unknown_cluster", {"clusterId": gid("Cluster", 999999)}, "NOT_FOUND", "clusterId"),
    ("unknown_pool", {"poolId": gid("Pool", 999999)}, "NOT_FOUND", "poolId"),
    (
        "unknown_request",
        {"paIds": ["PA"], "coverRequestId": gid("CoverRequest", 999999)},
        "NOT_FOUND",
        "coverRequestId",
    ),
]


@pytest.mark.parametrize(
    ("name", "change", "code", "field"), BAD_OFFERS, ids=[b[0] for b in BAD_OFFERS]
)
async def test_bad_offer_is_refused_and_writes_nothing(
    api: Api, db: AsyncSession, w: World, name: str, change: dict[str, Any], code: str, field: str
) -> None:
    before = await snapshot(db)
    data: dict[str, Any] = {"coverRequestId": gid("CoverRequest", w.request.id)}
    for key, value in change.items():
        if value == ["PA"]:
            value = [pa_gid(w.pa)]
        elif value == "POOL":
            value = gid("Pool", w.pool_id)
        data[key] = value
    out = (await api.data(OFFER, {"input": data}, token=coord(api, w)))["offerCover"]
    error = only_error(out)
    assert (error["code"], error["field"]) == (code, field), error
    assert await snapshot(db) == before


async def test_offer_for_a_closed_request_is_closed(api: Api, db: AsyncSession, w: World) -> None:
    await db.execute(
        update(CoverRequest)
        .where(CoverRequest.id == w.request.id)
        .values(status="CANCELLED", closed_at=func.now())
    )
    await db.commit()
    before = await snapshot(db)
    error = only_error(await offer(api, coord(api, w), w.request.id, paIds=[pa_gid(w.pa)]))
    assert (error["code"], error["field"]) == ("CLOSED", "coverRequestId")
    assert await snapshot(db) == before


async def test_who_may_offer(api: Api, db: AsyncSession, w: World) -> None:
    # Another cluster's coordinator cannot see the request: indistinguishable from unknown.
    other = api.token(Role.COORDINATOR, w.other_coordinator.id)
    hidden = only_error(await offer(api, other, w.request.id, paIds=[pa_gid(w.pa)]))
    unknown = only_error(await offer(api, other, 999999, paIds=[pa_gid(w.pa)]))
    assert hidden == unknown
    assert hidden["code"] == "NOT_FOUND"
    # PAs, service users and carers may not offer cover at all.
    for role, member in ((Role.PA, w.pa.id), (Role.SERVICE_USER, w.su.id)):
        variables = {"input": {"coverRequestId": gid("CoverRequest", w.request.id), "paIds": []}}
        refused = await api.refused(OFFER, variables, token=api.token(role, member))
        assert refused == "FORBIDDEN"
    # Admins may.
    out = await offer(api, api.token(Role.ADMIN), w.request.id, paIds=[pa_gid(w.outsider)])
    assert out["errors"] == []
    assert (await snapshot(db))["offers"][0][2] == w.outsider.id
    body = await api.query(OFFER, {"input": {"coverRequestId": gid("CoverRequest", 1)}})
    assert body["errors"][0]["extensions"]["code"] == "UNAUTHENTICATED"


# --- accepting -----------------------------------------------------------------------------


async def test_accept_fills_the_request_and_closes_the_other_offers(
    api: Api, db: AsyncSession, w: World
) -> None:
    mine, theirs = await offer_to(api, w, w.pa, w.pa2)
    out = await answer(api, ACCEPT, mine, pa_token(api, w.pa))
    assert out["errors"] == []
    got = out["offer"]
    assert got["status"] == "ACCEPTED"
    assert got["respondedAt"] is not None
    assert got["coverRequest"]["status"] == "FILLED"
    assert got["coverRequest"]["filledBy"]["id"] == pa_gid(w.pa)
    assert got["coverRequest"]["visit"] == {
        "id": gid("Visit", w.visit.id),
        "status": "SCHEDULED",
        "pa": {"id": pa_gid(w.pa)},
    }
    state = await snapshot(db)
    assert [(r[1], r[2]) for r in state["visits"] if r[0] == w.visit.id] == [(w.pa.id, "SCHEDULED")]
    [(_, status, filled_by, closed_at)] = state["requests"]
    assert (status, filled_by) == ("FILLED", w.pa.id) and closed_at is not None
    assert [(r[2], r[3]) for r in state["offers"]] == [(w.pa.id, "ACCEPTED"), (w.pa2.id, "CLOSED")]
    assert all(r[5] is not None for r in state["offers"])

    # The other PA's offer left their list, and accepting it now is refused.
    mine2 = (await api.data(MY_OFFERS, token=pa_token(api, w.pa2)))["myCoverOffers"]
    assert mine2["totalCount"] == 0
    error = only_error(await answer(api, ACCEPT, theirs, pa_token(api, w.pa2)))
    assert (error["code"], error["field"]) == ("CLOSED", "id")
    assert "already been covered" in error["message"]
    assert await snapshot(db) == state


async def test_accepting_an_expired_offer_is_closed(api: Api, db: AsyncSession, w: World) -> None:
    [offer_id] = await offer_to(api, w, w.pa)
    await db.execute(
        update(CoverOffer)
        .where(CoverOffer.id == pk(offer_id))
        .values(
            offered_at=func.now() - dt.timedelta(hours=3),
            expires_at=func.now() - dt.timedelta(minutes=1),
        )
    )
    await db.commit()
    before = await snapshot(db)
    error = only_error(await answer(api, ACCEPT, offer_id, pa_token(api, w.pa)))
    assert error["code"] == "CLOSED"
    assert "expired" in error["message"]
    error = only_error(await answer(api, DECLINE, offer_id, pa_token(api, w.pa)))
    assert error["code"] == "CLOSED" and "expired" in error["message"]
    assert await snapshot(db) == before
    # It reads as EXPIRED, without anyone having written it.
    node = await api.data(
        f'{{ node(id: "{offer_id}") {{ ... on CoverOffer {{ status }} }} }}',
        token=pa_token(api, w.pa),
    )
    assert node["node"]["status"] == "EXPIRED"


async def test_accepting_a_withdrawn_or_declined_offer_is_closed(
    api: Api, db: AsyncSession, w: World
) -> None:
    withdrawn, declined = await offer_to(api, w, w.pa, w.pa2)
    assert (await answer(api, WITHDRAW, withdrawn, coord(api, w)))["errors"] == []
    assert (await answer(api, DECLINE, declined, pa_token(api, w.pa2)))["errors"] == []
    before = await snapshot(db)
    assert [(r[2], r[3]) for r in before["offers"]] == [
        (w.pa.id, "WITHDRAWN"),
        (w.pa2.id, "DECLINED"),
    ]
    error = only_error(await answer(api, ACCEPT, withdrawn, pa_token(api, w.pa)))
    assert (error["code"], error["message"]) == ("CLOSED", "This offer was withdrawn.")
    error = only_error(await answer(api, ACCEPT, declined, pa_token(api, w.pa2)))
    assert (error["code"], error["message"]) == ("CLOSED", "This offer was declined.")
    assert await snapshot(db) == before
    assert before["requests"][0][1] == "OPEN"


async def test_an_offer_addressed_to_someone_else_is_not_found(
    api: Api, db: AsyncSession, w: World
) -> None:
    [offer_id] = await offer_to(api, w, w.pa)
    before = await snapshot(db)
    for mutation in (ACCEPT, DECLINE):
        someone_else = only_error(await answer(api, mutation, offer_id, pa_token(api, w.pa2)))
        unknown = only_error(
            await answer(api, mutation, gid("CoverOffer", 999999), pa_token(api, w.pa2))
        )
        assert someone_else == unknown
        assert (someone_else["code"], someone_else["field"]) == ("NOT_FOUND", "id")
    # Staff do not answer offers for PAs.
    assert await api.refused(ACCEPT, {"id": offer_id}, token=coord(api, w)) == "FORBIDDEN"
    assert await snapshot(db) == before


async def test_accepting_while_booked_elsewhere_is_a_conflict(
    api: Api, db: AsyncSession, w: World
) -> None:
    [offer_id] = await offer_to(api, w, w.pa)
    # Since the offer, Pat was booked for another visit overlapping this one.
    b = Build(db)
    await b.visit(w.other_su, w.pa, w.start + dt.timedelta(minutes=45))
    await db.commit()
    before = await snapshot(db)
    error = only_error(await answer(api, ACCEPT, offer_id, pa_token(api, w.pa)))
    assert (error["code"], error["field"]) == ("CONFLICT", "id")
    assert "You already have a visit on" in error["message"]
    assert await snapshot(db) == before


async def test_accepting_while_away_is_a_conflict(api: Api, db: AsyncSession, w: World) -> None:
    [offer_id] = await offer_to(api, w, w.pa)
    db.add(
        Absence(
            pa_id=w.pa.id,
            kind="SICKNESS",
            during=Range(w.start, w.start + dt.timedelta(days=2), bounds="[)"),
        )
    )
    await db.commit()
    before = await snapshot(db)
    error = only_error(await answer(api, ACCEPT, offer_id, pa_token(api, w.pa)))
    assert error["code"] == "CONFLICT"
    assert "away" in error["message"]
    assert await snapshot(db) == before


async def test_accepting_when_no_longer_a_candidate_is_a_conflict(
    api: Api, db: AsyncSession, w: World
) -> None:
    [offer_id] = await offer_to(api, w, w.pa)
    # Since the offer, Pat's availability for that time was removed.
    await db.execute(delete(AvailabilityWindow).where(AvailabilityWindow.pa_id == w.pa.id))
    await db.commit()
    before = await snapshot(db)
    error = only_error(await answer(api, ACCEPT, offer_id, pa_token(api, w.pa)))
    assert (error["code"], error["field"]) == ("CONFLICT", "id")
    assert error["message"].startswith("You can no longer take this visit")
    assert await snapshot(db) == before


async def test_accepting_for_a_visit_cancelled_or_booked_meanwhile_is_closed(
    api: Api, db: AsyncSession, w: World
) -> None:
    """Whoever cancels or books the visit closes its request with it (the database refuses
    a commit that leaves it open: migration 0017), so the acceptance finds it closed."""
    [offer_id] = await offer_to(api, w, w.pa)
    request = update(CoverRequest).where(CoverRequest.id == w.request.id)
    await db.execute(update(Visit).where(Visit.id == w.visit.id).values(status="CANCELLED"))
    await db.execute(request.values(status="CANCELLED", closed_at=func.now()))
    await db.commit()
    before = await snapshot(db)
    error = only_error(await answer(api, ACCEPT, offer_id, pa_token(api, w.pa)))
    assert (error["code"], error["message"]) == ("CLOSED", "This cover request was cancelled.")
    assert await snapshot(db) == before
    # Booked directly with another PA, who fills the request.
    await db.execute(
        update(Visit).where(Visit.id == w.visit.id).values(status="SCHEDULED", pa_id=w.pa2.id)
    )
    await db.execute(request.values(status="FILLED", filled_by_pa_id=w.pa2.id))
    await db.commit()
    before = await snapshot(db)
    error = only_error(await answer(api, ACCEPT, offer_id, pa_token(api, w.pa)))
    assert (error["code"], error["message"]) == ("CLOSED", "This visit has already been covered.")
    assert await snapshot(db) == before


async def test_a_visit_under_way_can_still_be_covered_but_not_one_that_is_over(
    api: Api, db: AsyncSession, w: World
) -> None:
    b = Build(db)
    started = at(hours=-0.5)
    await b.window(w.pa2, started - dt.timedelta(hours=1), hours=3)
    under_way = await b.visit(w.su, None, started, minutes=90, status="NEEDS_COVER")
    over = await b.visit(w.su, None, at(hours=-3), minutes=60, status="NEEDS_COVER")
    under_way_request = await open_request(db, under_way, "MISSED")
    over_request = await open_request(db, over, "MISSED")
    await db.commit()
    out = await offer(api, coord(api, w), under_way_request.id, paIds=[pa_gid(w.pa2)])
    assert out["errors"] == []
    accepted = await answer(api, ACCEPT, out["offers"][0]["id"], pa_token(api, w.pa2))
    assert accepted["errors"] == []
    error = only_error(await offer(api, coord(api, w), over_request.id, paIds=[pa_gid(w.pa2)]))
    assert (error["code"], error["field"], error["message"]) == (
        "CLOSED",
        "coverRequestId",
        "The visit is over.",
    )


# --- declining and withdrawing -------------------------------------------------------------


async def test_decline(api: Api, db: AsyncSession, w: World) -> None:
    mine, _ = await offer_to(api, w, w.pa, w.pa2)
    out = await answer(api, DECLINE, mine, pa_token(api, w.pa))
    assert out["errors"] == []
    assert out["offer"]["status"] == "DECLINED"
    # A declined offer no longer shows the request (the person, the visit time).
    assert out["offer"]["coverRequest"] is None
    assert [(r[1], r[2]) for r in await offer_rows(db)] == [
        (w.pa.id, "DECLINED"),
        (w.pa2.id, "OPEN"),
    ]
    error = only_error(await answer(api, DECLINE, mine, pa_token(api, w.pa)))
    assert (error["code"], error["message"]) == ("CLOSED", "This offer was declined.")
    # A declined offer can be made again.
    assert len(await offer_to(api, w, w.pa)) == 1


async def test_withdraw(api: Api, db: AsyncSession, w: World) -> None:
    [offer_id] = await offer_to(api, w, w.pa)
    before = await snapshot(db)
    # The PA may not withdraw; another cluster's coordinator cannot see the offer.
    assert await api.refused(WITHDRAW, {"id": offer_id}, token=pa_token(api, w.pa)) == "FORBIDDEN"
    other = api.token(Role.COORDINATOR, w.other_coordinator.id)
    assert only_error(await answer(api, WITHDRAW, offer_id, other))["code"] == "NOT_FOUND"
    assert await snapshot(db) == before

    out = await answer(api, WITHDRAW, offer_id, coord(api, w))
    assert out["errors"] == []
    assert out["offer"]["status"] == "WITHDRAWN"
    assert [r[2] for r in await offer_rows(db)] == ["WITHDRAWN"]
    assert (await api.data(MY_OFFERS, token=pa_token(api, w.pa)))["myCoverOffers"][
        "totalCount"
    ] == 0
    error = only_error(await answer(api, WITHDRAW, offer_id, coord(api, w)))
    assert error["code"] == "CLOSED"


# --- events --------------------------------------------------------------------------------


async def test_events_are_published_on_commit(api: Api, db: AsyncSession, w: World) -> None:
    """One event per subject a change touched (the request once, however many of its
    offers changed), numbered in commit order; a refused change stores none."""
    mark = await latest(db)
    a, b, c = await offer_to(api, w, w.pa, w.pa2, w.pool_pa)
    await answer(api, DECLINE, c, pa_token(api, w.pool_pa))
    # A refused acceptance publishes nothing (its savepoint is rolled back).
    only_error(await answer(api, ACCEPT, a, pa_token(api, w.pa2)))
    await answer(api, ACCEPT, a, pa_token(api, w.pa))
    events = await committed_since(db, mark)
    assert [e.sequence for e in events] == list(range(mark + 1, mark + 1 + len(events)))
    requests = [e for e in events if e.subject == "COVER_REQUEST"]
    assert all(e.cluster_ids == (w.cluster.id,) for e in requests)
    assert [(e.subject, e.kind, e.subject_id, e.pa_id) for e in events] == [
        ("COVER_REQUEST", "OFFER_MADE", w.request.id, None),
        ("COVER_OFFER", "OFFER_MADE", pk(a), w.pa.id),
        ("COVER_OFFER", "OFFER_MADE", pk(b), w.pa2.id),
        ("COVER_OFFER", "OFFER_MADE", pk(c), w.pool_pa.id),
        ("COVER_REQUEST", "OFFER_DECLINED", w.request.id, None),
        ("COVER_OFFER", "OFFER_DECLINED", pk(c), w.pool_pa.id),
        ("COVER_REQUEST", "REQUEST_FILLED", w.request.id, None),
        ("COVER_OFFER", "OFFER_ACCEPTED", pk(a), w.pa.id),
        ("COVER_OFFER", "OFFER_CLOSED", pk(b), w.pa2.id),
    ]


# --- statements ----------------------------------------------------------------------------


def reset(counter: StatementCounter) -> None:
    counter.count = 0
    counter.statements.clear()


async def test_statements_do_not_grow_with_the_number_of_offers(
    api: Api, db: AsyncSession, w: World, sql_counter: StatementCounter
) -> None:
    b = Build(db)
    many = [await b.pa(f"Pool PA {i}", skills=["personal-care"]) for i in range(12)]
    for p in many:
        await b.window(p, w.start - dt.timedelta(hours=1), hours=4)
    big = await b.pool("Big pool", pas=many)
    lone = await b.pool("Small pool", pas=[w.outsider])
    later = w.start + dt.timedelta(days=1)
    await b.window(w.outsider, later - dt.timedelta(hours=1), hours=4)
    small_visit = await b.visit(w.su, None, later, status="NEEDS_COVER")
    small_request = await open_request(db, small_visit)
    await db.commit()

    reset(sql_counter)
    small = await offer(api, coord(api, w), small_request.id, poolId=gid("Pool", lone.id))
    assert small["errors"] == [] and len(small["offers"]) == 1
    one = sql_counter.count

    reset(sql_counter)
    out = await offer(api, coord(api, w), w.request.id, poolId=gid("Pool", big.id))
    assert out["errors"] == [] and len(out["offers"]) == 12
    assert [o["personalAssistant"]["name"] for o in out["offers"]] == [p.name for p in many]
    assert sql_counter.count == one, sql_counter.statements

    # Accepting closes the other eleven offers in one statement too.
    reset(sql_counter)
    assert (await answer(api, ACCEPT, small["offers"][0]["id"], pa_token(api, w.outsider)))[
        "errors"
    ] == []
    accept_one = sql_counter.count
    reset(sql_counter)
    assert (await answer(api, ACCEPT, out["offers"][0]["id"], pa_token(api, many[0])))[
        "errors"
    ] == []
    assert sql_counter.count == accept_one, sql_counter.statements
