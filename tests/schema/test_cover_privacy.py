"""Who sees absences, cover requests and offers."""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass
from typing import Any

import pytest
from sqlalchemy import func, select, update
from sqlalchemy.dialects.postgresql import Range
from sqlalchemy.ext.asyncio import AsyncSession

from care.enums import Role
from care.models import Absence, CoverOffer, CoverRequest, Visit
from tests.conftest import Api
from tests.factories import Build, at, gid

REQUESTS = """{ coverRequests { totalCount edges { node { status reason
  visit { startsAt tasks serviceUser { name email } }
  originalPa { name } offers { status personalAssistant { name } } } } } }"""
ABSENCES = "{ absences { totalCount edges { node { kind personalAssistant { name } } } } }"
MY_OFFERS = "{ myCoverOffers { totalCount edges { node { status coverRequest { status } } } } }"


@dataclass
class Cover:
    coordinator: Any
    other_coordinator: Any
    su: Any
    other_su: Any
    carer: Any
    absent_pa: Any
    offered_pa: Any
    stranger_pa: Any


@pytest.fixture
async def cover(db: AsyncSession) -> Cover:
    b = Build(db)
    await b.las()
    await b.coop()
    coordinator = await b.worker("Cora Ordinator")
    other_coordinator = await b.worker("Otto Ordinator")
    cluster = await b.cluster("Finchley", support_worker=coordinator)
    other_cluster = await b.cluster("East", support_worker=other_coordinator)
    su = await b.service_user("Ada User", cluster=cluster)
    other_su = await b.service_user("Bob Other", cluster=other_cluster)
    carer = await b.carer(su)
    absent_pa = await b.pa("Abe Sent", cluster=cluster)
    offered_pa = await b.pa("Opal Offered")
    stranger_pa = await b.pa("Sid Stranger", cluster=other_cluster)
    visit = await b.visit(su, None, at(days=2), status="NEEDS_COVER", tasks=["hoist"])
    start = at(days=1)
    absence = Absence(
        pa_id=absent_pa.id,
        kind="SICKNESS",
        during=Range(start, start + dt.timedelta(days=3), bounds="[)"),
        note="hospital appointment",
    )
    db.add(absence)
    await db.flush()
    request = CoverRequest(
        visit_id=visit.id, reason="ABSENCE", absence_id=absence.id, original_pa_id=absent_pa.id
    )
    db.add(request)
    await db.flush()
    db.add(
        CoverOffer(
            cover_request_id=request.id,
            pa_id=offered_pa.id,
            expires_at=dt.datetime.now(dt.UTC) + dt.timedelta(hours=2),
        )
    )
    await db.commit()
    return Cover(
        coordinator, other_coordinator, su, other_su, carer, absent_pa, offered_pa, stranger_pa
    )


def tokens(api: Api, c: Cover) -> dict[str, str | None]:
    return {
        "admin": api.token(Role.ADMIN),
        "coordinator": api.token(Role.COORDINATOR, c.coordinator.id),
        "other_coordinator": api.token(Role.COORDINATOR, c.other_coordinator.id),
        "su": api.token(Role.SERVICE_USER, c.su.id),
        "other_su": api.token(Role.SERVICE_USER, c.other_su.id),
        "carer": api.token(Role.CARER, c.carer.id),
        "absent_pa": api.token(Role.PA, c.absent_pa.id),
        "offered_pa": api.token(Role.PA, c.offered_pa.id),
        "stranger_pa": api.token(Role.PA, c.stranger_pa.id),
        "analyst": api.tokens.issue(Role.LA_ANALYST, la_code="E09000003"),
        "anonymous": None,
    }


@pytest.mark.parametrize(
    "who,count",
    [
        ("admin", 1),
        ("coordinator", 1),
        ("other_coordinator", 0),
        ("su", 1),
        ("other_su", 0),
        ("carer", 1),
        ("absent_pa", 0),
        ("offered_pa", 1),
        ("stranger_pa", 0),
    ],
)
async def test_cover_request_visibility(api: Api, cover: Cover, who: str, count: int) -> None:
    data = await api.data(REQUESTS, token=tokens(api, cover)[who])
    assert data["coverRequests"]["totalCount"] == count


@pytest.mark.parametrize("who,code", [("analyst", "FORBIDDEN"), ("anonymous", "UNAUTHENTICATED")])
async def test_outsiders_get_no_cover_requests(api: Api, cover: Cover, who: str, code: str) -> None:
    body = await api.query(REQUESTS, token=tokens(api, cover)[who])
    assert body["data"] is None
    assert body["errors"][0]["extensions"]["code"] == code


async def test_offered_pa_sees_the_time_but_not_the_person_tasks_or_contact(
    api: Api, cover: Cover
) -> None:
    # The person is known to the PA only by the offer's summary (first name, district,
    # needs, tasks summary: tests/schema/test_offer_summary.py) until they accept.
    data = await api.data(REQUESTS, token=tokens(api, cover)["offered_pa"])
    node = data["coverRequests"]["edges"][0]["node"]
    assert node["visit"]["tasks"] is None
    assert node["visit"]["serviceUser"] is None
    assert node["offers"] == [{"status": "OPEN", "personalAssistant": {"name": "Opal Offered"}}]


async def test_coordinator_sees_everything_about_the_request(api: Api, cover: Cover) -> None:
    data = await api.data(REQUESTS, token=tokens(api, cover)["coordinator"])
    node = data["coverRequests"]["edges"][0]["node"]
    assert node["visit"]["tasks"] == ["hoist"]
    assert node["visit"]["serviceUser"]["email"] == "ada@example.org"
    assert node["originalPa"] == {"name": "Abe Sent"}
    assert len(node["offers"]) == 1


async def test_the_person_sees_their_request_but_not_who_was_asked(api: Api, cover: Cover) -> None:
    data = await api.data(REQUESTS, token=tokens(api, cover)["su"])
    assert data["coverRequests"]["edges"][0]["node"]["offers"] == []


@pytest.mark.parametrize(
    "who,count",
    [
        ("admin", 1),
        ("coordinator", 1),
        ("absent_pa", 1),
        ("other_coordinator", 0),
        ("offered_pa", 0),
        ("stranger_pa", 0),
        ("su", 0),
        ("carer", 0),
    ],
)
async def test_absence_visibility(api: Api, cover: Cover, who: str, count: int) -> None:
    data = await api.data(ABSENCES, token=tokens(api, cover)[who])
    assert data["absences"]["totalCount"] == count


@pytest.mark.parametrize("who,code", [("analyst", "FORBIDDEN"), ("anonymous", "UNAUTHENTICATED")])
async def test_outsiders_get_no_absences(api: Api, cover: Cover, who: str, code: str) -> None:
    body = await api.query(ABSENCES, token=tokens(api, cover)[who])
    assert body["data"] is None
    assert body["errors"][0]["extensions"]["code"] == code


ABSENCE_NODE = "query($id: ID!) { node(id: $id) { ... on Absence { kind note } } }"


async def absence_node(api: Api, token: str | None, absence_id: int) -> dict[str, Any] | None:
    body = await api.query(ABSENCE_NODE, {"id": gid("Absence", absence_id)}, token=token)
    assert not body.get("errors"), body
    node: dict[str, Any] | None = body["data"]["node"]
    return node


async def the_absence(db: AsyncSession) -> int:
    found: int = await db.scalar(select(Absence.id))  # type: ignore[assignment]
    return found


@pytest.mark.parametrize(
    "who,seen",
    [
        ("admin", {"kind": "SICKNESS", "note": "hospital appointment"}),
        ("absent_pa", {"kind": "SICKNESS", "note": "hospital appointment"}),
        # The coordinator who arranges the PA's cover: the absence, not its reason.
        ("coordinator", {"kind": "SICKNESS", "note": None}),
        ("other_coordinator", None),
        ("stranger_pa", None),
        ("offered_pa", None),
        ("su", None),
        ("analyst", None),
        ("anonymous", None),
    ],
)
async def test_an_absence_and_its_note(
    api: Api, cover: Cover, db: AsyncSession, who: str, seen: dict[str, Any] | None
) -> None:
    assert await absence_node(api, tokens(api, cover)[who], await the_absence(db)) == seen


async def test_filters_and_relations_obey_the_absence_rules(api: Api, cover: Cover) -> None:
    by_pa = "query($pa: ID!) { absences(paId: $pa) { totalCount edges { node { note } } } }"
    variables = {"pa": gid("PersonalAssistant", cover.absent_pa.id)}
    other = await api.data(by_pa, variables, token=tokens(api, cover)["other_coordinator"])
    assert other["absences"] == {"totalCount": 0, "edges": []}
    mine = await api.data(by_pa, variables, token=tokens(api, cover)["coordinator"])
    assert mine["absences"] == {"totalCount": 1, "edges": [{"node": {"note": None}}]}
    via_request = "{ coverRequests { nodes { absence { kind note } } } }"
    data = await api.data(via_request, token=tokens(api, cover)["coordinator"])
    assert data["coverRequests"]["nodes"] == [{"absence": {"kind": "SICKNESS", "note": None}}]


# --- offers grant sight of a visit only while they are open -------------------------------

OFFERED = """query($visit: ID!, $su: ID!) {
  coverRequests { totalCount }
  visit: node(id: $visit) { ... on Visit { startsAt } }
  person: node(id: $su) { ... on ServiceUser { name needs } }
  members(first: 100) { nodes { name } }
  myCoverOffers { nodes { coverRequest { status } visitSummary { personFirstName } } } }"""


async def offered_view(api: Api, cover: Cover, db: AsyncSession) -> dict[str, Any]:
    visit_id = await db.scalar(select(CoverRequest.visit_id))
    variables = {"visit": gid("Visit", visit_id or 0), "su": gid("ServiceUser", cover.su.id)}
    return await api.data(OFFERED, variables, token=tokens(api, cover)["offered_pa"])


async def test_an_open_offer_shows_the_time_and_only_the_first_name(
    api: Api, cover: Cover, db: AsyncSession
) -> None:
    data = await offered_view(api, cover, db)
    assert data["coverRequests"]["totalCount"] == 1
    assert data["visit"] is not None
    [offer] = data["myCoverOffers"]["nodes"]
    assert offer["visitSummary"] == {"personFirstName": "Ada"}
    assert data["person"] is None
    assert "Ada User" not in {m["name"] for m in data["members"]["nodes"]}


@pytest.mark.parametrize("status", ["DECLINED", "WITHDRAWN", "CLOSED", "EXPIRED", "past expiry"])
async def test_an_offer_no_longer_open_shows_nothing(
    api: Api, cover: Cover, db: AsyncSession, status: str
) -> None:
    if status == "past expiry":
        await db.execute(
            update(CoverOffer).values(
                offered_at=func.now() - dt.timedelta(hours=3),
                expires_at=func.now() - dt.timedelta(minutes=1),
            )
        )
    else:
        await db.execute(update(CoverOffer).values(status=status, responded_at=func.now()))
    await db.commit()
    data = await offered_view(api, cover, db)
    assert data["coverRequests"]["totalCount"] == 0
    assert data["visit"] is None
    assert data["person"] is None
    assert "Ada User" not in {m["name"] for m in data["members"]["nodes"]}


async def test_an_accepted_offer_shows_the_visit_as_the_pas_own(
    api: Api, cover: Cover, db: AsyncSession
) -> None:
    await db.execute(update(CoverOffer).values(status="ACCEPTED", responded_at=func.now()))
    await db.execute(
        update(CoverRequest).values(
            status="FILLED", filled_by_pa_id=cover.offered_pa.id, closed_at=func.now()
        )
    )
    await db.execute(update(Visit).values(pa_id=cover.offered_pa.id, status="SCHEDULED"))
    await db.commit()
    data = await offered_view(api, cover, db)
    assert data["coverRequests"]["totalCount"] == 1
    assert data["visit"] is not None
    assert data["person"]["name"] == "Ada User"


async def test_my_cover_offers_are_my_own(api: Api, cover: Cover) -> None:
    mine = await api.data(MY_OFFERS, token=tokens(api, cover)["offered_pa"])
    assert mine["myCoverOffers"]["totalCount"] == 1
    theirs = await api.data(MY_OFFERS, token=tokens(api, cover)["stranger_pa"])
    assert theirs["myCoverOffers"]["totalCount"] == 0
    coordinator = await api.query(MY_OFFERS, token=tokens(api, cover)["coordinator"])
    assert coordinator["errors"][0]["extensions"]["code"] == "FORBIDDEN"


async def test_expired_offer_is_reported_expired_and_not_listed(
    api: Api, cover: Cover, db: AsyncSession
) -> None:
    from sqlalchemy import text

    await db.execute(
        text(
            "UPDATE cover_offer SET offered_at = now() - interval '3 hours', "
            "expires_at = now() - interval '1 minute'"
        )
    )
    await db.commit()
    mine = await api.data(MY_OFFERS, token=tokens(api, cover)["offered_pa"])
    assert mine["myCoverOffers"]["totalCount"] == 0
    data = await api.data(REQUESTS, token=tokens(api, cover)["coordinator"])
    assert data["coverRequests"]["edges"][0]["node"]["offers"][0]["status"] == "EXPIRED"
