"""Member mutations through the API: registering, updating, carers and regular PAs; their
validation (nothing written on error) and who may do what."""

from __future__ import annotations

import base64
import datetime as dt
from dataclasses import dataclass
from decimal import Decimal
from typing import Any

import pytest
from sqlalchemy import func, select
from sqlalchemy.ext.asyncio import AsyncSession

from care.enums import Role
from care.models import (
    CarerLink,
    Cluster,
    ClusterPa,
    ClusterServiceUser,
    Member,
    PaProfile,
    PaSkill,
    RegularPa,
    ServiceUserProfile,
)
from tests.conftest import Api
from tests.factories import Build, gid

MEMBER_TABLES = (
    Member,
    ServiceUserProfile,
    PaProfile,
    PaSkill,
    CarerLink,
    ClusterServiceUser,
    ClusterPa,
    RegularPa,
)
PAYLOAD = "member { id name } errors { field code message }"

REGISTER_SU = f"""
mutation($input: RegisterServiceUserInput!) {{ registerServiceUser(input: $input) {{ {PAYLOAD} }} }}
"""
REGISTER_PA = f"""
mutation($input: RegisterPersonalAssistantInput!) {{
  registerPersonalAssistant(input: $input) {{ {PAYLOAD} }}
}}"""
REGISTER_CARER = f"""
mutation($input: RegisterCarerInput!) {{ registerCarer(input: $input) {{ {PAYLOAD} }} }}
"""
REGISTER_MEMBER = f"""
mutation($input: RegisterMemberInput!) {{ registerMember(input: $input) {{ {PAYLOAD} }} }}
"""
UPDATE_MEMBER = """
mutation($id: ID!, $input: UpdateMemberInput!) {
  updateMember(id: $id, input: $input) {
    member { id name email phone postcode latitude longitude active }
    errors { field code message }
  }
}"""
UPDATE_SU = f"""
mutation($id: ID!, $input: UpdateServiceUserInput!) {{
  updateServiceUser(id: $id, input: $input) {{ {PAYLOAD} }}
}}"""
UPDATE_PA = f"""
mutation($id: ID!, $input: UpdatePersonalAssistantInput!) {{
  updatePersonalAssistant(id: $id, input: $input) {{ {PAYLOAD} }}
}}"""
LINK_CARER = f"""
mutation($carer: ID!, $su: ID!, $rel: String) {{
  linkCarer(carerId: $carer, serviceUserId: $su, relationship: $rel) {{ {PAYLOAD} }}
}}"""
UNLINK_CARER = f"""
mutation($carer: ID!, $su: ID!) {{
  unlinkCarer(carerId: $carer, serviceUserId: $su) {{ {PAYLOAD} }}
}}"""
SET_REGULARS = f"""
mutation($su: ID!, $pas: [ID!]!) {{
  setRegularPersonalAssistants(serviceUserId: $su, paIds: $pas) {{ {PAYLOAD} }}
}}"""

SERVICE_USER = """
query($id: ID!) {
  node(id: $id) {
    __typename
    ... on ServiceUser {
      name email phone postcode latitude longitude joinedOn membershipClass funding needs
      plannedWeeklyHours clusters { id } carers { id }
      regularPersonalAssistants { id }
    }
  }
}"""
PERSONAL_ASSISTANT = """
query($id: ID!) {
  node(id: $id) {
    __typename
    ... on PersonalAssistant {
      name email postcode latitude longitude membershipClass dbsCheckedOn
      contractedWeeklyHours hourlyPayPence maxTravelKm workingTimeOptOut
      skills { name expiresOn } clusters { id }
    }
  }
}"""
CARER = """
query($id: ID!) {
  node(id: $id) { __typename ... on Carer { name email membershipClass caresFor { id } } }
}"""


@dataclass
class World:
    coordinator: Member
    cluster_id: int
    other_cluster_id: int
    su: Member
    other_su: Member
    carer: Member
    pa: Member
    teammate: Member


@pytest.fixture
async def world(db: AsyncSession) -> World:
    b = Build(db)
    await b.las()
    await b.coop()
    coordinator = await b.worker("Cora Ordinator")
    other_coordinator = await b.worker("Otto Ordinator")
    cluster = await b.cluster("Finchley", support_worker=coordinator)
    other = await b.cluster("Barnet East", support_worker=other_coordinator)
    su = await b.service_user("Ada User", cluster=cluster)
    other_su = await b.service_user("Bob Other", cluster=other, email="bob@example.org")
    carer = await b.carer(su)
    pa = await b.pa("Pat Assistant", cluster=cluster, skills=["hoist"])
    teammate = await b.pa("Tim Team", cluster=cluster)
    await db.commit()
    return World(coordinator, cluster.id, other.id, su, other_su, carer, pa, teammate)


async def snapshot(db: AsyncSession) -> dict[str, list[tuple[Any, ...]]]:
    """Every row of the member tables, to show an error changed nothing."""
    out: dict[str, list[tuple[Any, ...]]] = {}
    for model in MEMBER_TABLES:
        table = model.__table__  # type: ignore[attr-defined]
        rows = (await db.execute(select(table))).all()
        out[table.name] = sorted((tuple(r) for r in rows), key=repr)
    await db.commit()  # end the read transaction so later snapshots see new commits
    return out


def result(data: dict[str, Any]) -> dict[str, Any]:
    payload: dict[str, Any] = next(iter(data.values()))
    return payload


def errors(data: dict[str, Any]) -> list[tuple[str | None, str]]:
    return [(e["field"], e["code"]) for e in result(data)["errors"]]


def as_admin(api: Api) -> str:
    return api.token(Role.ADMIN)


def as_coordinator(api: Api, w: World) -> str:
    return api.token(Role.COORDINATOR, w.coordinator.id)


def su_input(**changes: Any) -> dict[str, Any]:
    base: dict[str, Any] = {
        "name": "Edna Newcome",
        "funding": "PERSONAL_BUDGET",
        "needs": ["Hoist", " Moving and Handling "],
        "plannedWeeklyHours": 12.5,
    }
    return {**base, **changes}


def pa_input(**changes: Any) -> dict[str, Any]:
    base: dict[str, Any] = {
        "name": "Priya Assistant",
        "contractedWeeklyHours": 24,
        "hourlyPayPence": 1350,
        "maxTravelKm": 8,
    }
    return {**base, **changes}


async def node(api: Api, query: str, type_name: str, pk: int) -> dict[str, Any]:
    data = await api.data(query, {"id": gid(type_name, pk)}, token=api.token(Role.ADMIN))
    found: dict[str, Any] = data["node"]
    return found


def pk_of(data: dict[str, Any]) -> int:
    raw = base64.b64decode(result(data)["member"]["id"]).decode()
    return int(raw.split(":")[1])


# --- registering service users -------------------------------------------------------------


async def test_admin_registers_a_service_user_into_a_cluster(
    api: Api, db: AsyncSession, world: World
) -> None:
    data = await api.data(
        REGISTER_SU,
        {
            "input": su_input(
                email=" edna@example.org ",
                phone="020 7946 0000",
                postcode="n12  0aa",
                location={"latitude": 51.6, "longitude": -0.18},
                joinedOn="2026-01-05",
                clusterId=gid("Cluster", world.cluster_id),
            )
        },
        token=as_admin(api),
    )
    assert result(data)["errors"] == []
    assert result(data)["member"]["name"] == "Edna Newcome"
    pk = pk_of(data)
    person = await node(api, SERVICE_USER, "ServiceUser", pk)
    assert person == {
        "__typename": "ServiceUser",
        "name": "Edna Newcome",
        "email": "edna@example.org",
        "phone": "020 7946 0000",
        "postcode": "N12 0AA",
        "latitude": 51.6,
        "longitude": -0.18,
        "joinedOn": "2026-01-05",
        "membershipClass": "SERVICE_USER",
        "funding": "PERSONAL_BUDGET",
        "needs": ["hoist", "moving-and-handling"],
        "plannedWeeklyHours": 12.5,
        "clusters": [{"id": gid("Cluster", world.cluster_id)}],
        "carers": [],
        "regularPersonalAssistants": [],
    }
    profile = await db.get(ServiceUserProfile, pk)
    assert profile is not None and profile.planned_weekly_hours == Decimal("12.50")


async def test_admin_registers_a_service_user_without_a_cluster(
    api: Api, db: AsyncSession, world: World
) -> None:
    data = await api.data(REGISTER_SU, {"input": su_input()}, token=as_admin(api))
    pk = pk_of(data)
    member = await db.get(Member, pk)
    assert member is not None and member.membership_class == "SERVICE_USER"
    assert member.joined_on == await db.scalar(select(func.current_date()))
    links = await db.scalars(
        select(ClusterServiceUser).where(ClusterServiceUser.service_user_id == pk)
    )
    assert list(links) == []


async def test_coordinator_registers_into_own_cluster_and_can_then_see_the_person(
    api: Api, world: World
) -> None:
    token = as_coordinator(api, world)
    data = await api.data(
        REGISTER_SU,
        {
            "input": su_input(
                clusterId=gid("Cluster", world.cluster_id),
                email="edna@example.org",
            )
        },
        token=token,
    )
    assert result(data)["errors"] == []
    pk = pk_of(data)
    seen = await api.data(SERVICE_USER, {"id": gid("ServiceUser", pk)}, token=token)
    assert seen["node"]["email"] == "edna@example.org"
    assert seen["node"]["clusters"] == [{"id": gid("Cluster", world.cluster_id)}]


@pytest.mark.parametrize(
    ("cluster", "expected"),
    [
        (None, ("clusterId", "REQUIRED")),
        ("other", ("clusterId", "FORBIDDEN")),
        ("unknown", ("clusterId", "NOT_FOUND")),
        ("wrong-type", ("clusterId", "NOT_FOUND")),
    ],
)
async def test_coordinator_must_register_into_a_cluster_of_theirs(
    api: Api, db: AsyncSession, world: World, cluster: str | None, expected: tuple[str, str]
) -> None:
    ids = {
        "other": gid("Cluster", world.other_cluster_id),
        "unknown": gid("Cluster", 999_999),
        "wrong-type": gid("Pool", world.cluster_id),
    }
    before = await snapshot(db)
    extra = {"clusterId": ids[cluster]} if cluster else {}
    data = await api.data(
        REGISTER_SU, {"input": su_input(**extra)}, token=as_coordinator(api, world)
    )
    assert errors(data) == [expected]
    assert result(data)["member"] is None
    assert await snapshot(db) == before


@pytest.mark.parametrize(
    ("changes", "expected"),
    [
        ({"name": "   "}, ("name", "REQUIRED")),
        ({"email": "edna.example.org"}, ("email", "INVALID")),
        ({"email": "edna@localhost"}, ("email", "INVALID")),
        ({"postcode": "12345"}, ("postcode", "INVALID")),
        ({"postcode": "N12 0A"}, ("postcode", "INVALID")),
        ({"location": {"latitude": 91, "longitude": 0}}, ("location", "INVALID")),
        ({"location": {"latitude": 51, "longitude": -180.5}}, ("location", "INVALID")),
        ({"plannedWeeklyHours": -1}, ("plannedWeeklyHours", "INVALID")),
        ({"plannedWeeklyHours": 168.5}, ("plannedWeeklyHours", "INVALID")),
    ],
)
async def test_service_user_validation_writes_nothing(
    api: Api, db: AsyncSession, world: World, changes: dict[str, Any], expected: tuple[str, str]
) -> None:
    before = await snapshot(db)
    data = await api.data(REGISTER_SU, {"input": su_input(**changes)}, token=as_admin(api))
    assert errors(data) == [expected]
    assert result(data)["member"] is None
    assert await snapshot(db) == before


async def test_several_problems_are_reported_together(
    api: Api, db: AsyncSession, world: World
) -> None:
    before = await snapshot(db)
    data = await api.data(
        REGISTER_SU,
        {
            "input": su_input(
                name="",
                email="nope",
                postcode="nowhere",
                plannedWeeklyHours=200,
            )
        },
        token=as_coordinator(api, world),
    )
    assert sorted(errors(data)) == sorted(
        [
            ("name", "REQUIRED"),
            ("email", "INVALID"),
            ("postcode", "INVALID"),
            ("plannedWeeklyHours", "INVALID"),
            ("clusterId", "REQUIRED"),
        ]
    )
    assert await snapshot(db) == before


# --- registering PAs -------------------------------------------------------------------


async def test_coordinator_registers_a_pa_with_skills_into_their_cluster(
    api: Api, db: AsyncSession, world: World
) -> None:
    data = await api.data(
        REGISTER_PA,
        {
            "input": pa_input(
                email="priya@example.org",
                postcode="N20 9AB",
                location={"latitude": 51.63, "longitude": -0.17},
                dbsCheckedOn="2026-01-10",
                workingTimeOptOut=True,
                hourlyPayPence=1100,  # below the NLW: apprentice rates exist
                skills=[
                    {"name": "Hoist", "expiresOn": "2027-03-01"},
                    {"name": "Medication support"},
                ],
                clusterId=gid("Cluster", world.cluster_id),
            )
        },
        token=as_coordinator(api, world),
    )
    assert result(data)["errors"] == []
    pk = pk_of(data)
    pa = await node(api, PERSONAL_ASSISTANT, "PersonalAssistant", pk)
    assert pa == {
        "__typename": "PersonalAssistant",
        "name": "Priya Assistant",
        "email": "priya@example.org",
        "postcode": "N20 9AB",
        "latitude": 51.63,
        "longitude": -0.17,
        "membershipClass": "WORKER",
        "dbsCheckedOn": "2026-01-10",
        "contractedWeeklyHours": 24.0,
        "hourlyPayPence": 1100,
        "maxTravelKm": 8.0,
        "workingTimeOptOut": True,
        "skills": [
            {"name": "hoist", "expiresOn": "2027-03-01"},
            {"name": "medication-support", "expiresOn": None},
        ],
        "clusters": [{"id": gid("Cluster", world.cluster_id)}],
    }
    team = await db.scalars(select(ClusterPa.pa_id).where(ClusterPa.cluster_id == world.cluster_id))
    assert pk in set(team)


async def test_admin_registers_a_pa_without_a_cluster(
    api: Api, db: AsyncSession, world: World
) -> None:
    data = await api.data(REGISTER_PA, {"input": pa_input()}, token=as_admin(api))
    pk = pk_of(data)
    profile = await db.get(PaProfile, pk)
    assert profile is not None
    assert (profile.hourly_pay_pence, profile.working_time_opt_out) == (1350, False)
    assert list(await db.scalars(select(PaSkill).where(PaSkill.pa_id == pk))) == []


@pytest.mark.parametrize(
    ("changes", "expected"),
    [
        ({"contractedWeeklyHours": -0.5}, ("contractedWeeklyHours", "INVALID")),
        ({"hourlyPayPence": 0}, ("hourlyPayPence", "INVALID")),
        ({"hourlyPayPence": -1271}, ("hourlyPayPence", "INVALID")),
        ({"maxTravelKm": -1}, ("maxTravelKm", "INVALID")),
        ({"skills": [{"name": "hoist"}, {"name": " Hoist "}]}, ("skills", "INVALID")),
        ({"skills": [{"name": "  "}]}, ("skills", "REQUIRED")),
        ({"name": ""}, ("name", "REQUIRED")),
        ({"postcode": "SW1A1AAA"}, ("postcode", "INVALID")),
        ({"clusterId": gid("Cluster", 424242)}, ("clusterId", "NOT_FOUND")),
    ],
)
async def test_pa_validation_writes_nothing(
    api: Api, db: AsyncSession, world: World, changes: dict[str, Any], expected: tuple[str, str]
) -> None:
    before = await snapshot(db)
    data = await api.data(REGISTER_PA, {"input": pa_input(**changes)}, token=as_admin(api))
    assert errors(data) == [expected]
    assert await snapshot(db) == before


async def test_skill_expiry_must_be_a_date(api: Api, db: AsyncSession, world: World) -> None:
    before = await snapshot(db)
    body = await api.query(
        REGISTER_PA,
        {"input": pa_input(skills=[{"name": "hoist", "expiresOn": "next spring"}])},
        token=as_admin(api),
    )
    assert body["errors"] and body.get("data") is None
    assert await snapshot(db) == before


async def test_coordinator_cannot_put_a_pa_in_another_coordinators_cluster(
    api: Api, db: AsyncSession, world: World
) -> None:
    before = await snapshot(db)
    data = await api.data(
        REGISTER_PA,
        {"input": pa_input(clusterId=gid("Cluster", world.other_cluster_id))},
        token=as_coordinator(api, world),
    )
    assert errors(data) == [("clusterId", "FORBIDDEN")]
    assert await snapshot(db) == before


# --- registering carers and other members ------------------------------------------------


async def test_coordinator_registers_a_carer_of_their_service_user(api: Api, world: World) -> None:
    token = as_coordinator(api, world)
    data = await api.data(
        REGISTER_CARER,
        {
            "input": {
                "name": "Carl Carer",
                "email": "carl@example.org",
                "relationship": " son ",
                "serviceUserIds": [
                    gid("ServiceUser", world.su.id),
                    gid("ServiceUser", world.su.id),
                ],
            }
        },
        token=token,
    )
    assert result(data)["errors"] == []
    pk = pk_of(data)
    carer = await api.data(CARER, {"id": gid("Carer", pk)}, token=token)
    assert carer["node"] == {
        "__typename": "Carer",
        "name": "Carl Carer",
        "email": "carl@example.org",
        "membershipClass": "CARER",
        "caresFor": [{"id": gid("ServiceUser", world.su.id)}],
    }
    person = await node(api, SERVICE_USER, "ServiceUser", world.su.id)
    assert {"id": gid("Carer", pk)} in person["carers"]


@pytest.mark.parametrize(
    ("who", "expected"),
    [
        ("outside", ("serviceUserIds", "NOT_FOUND")),
        ("nobody", ("serviceUserIds", "REQUIRED")),
        ("pa", ("serviceUserIds", "NOT_FOUND")),
    ],
)
async def test_carer_needs_service_users_the_coordinator_manages(
    api: Api, db: AsyncSession, world: World, who: str, expected: tuple[str, str]
) -> None:
    ids = {
        "outside": [gid("ServiceUser", world.su.id), gid("ServiceUser", world.other_su.id)],
        "nobody": [],
        "pa": [gid("ServiceUser", world.pa.id)],  # a PA disguised as a service user
    }[who]
    before = await snapshot(db)
    data = await api.data(
        REGISTER_CARER,
        {"input": {"name": "Carl", "serviceUserIds": ids}},
        token=as_coordinator(api, world),
    )
    assert errors(data) == [expected]
    assert await snapshot(db) == before


@pytest.mark.parametrize(
    ("cls", "typename"), [("SUPPORTER", "CoopMember"), ("WORKER", "CoopMember")]
)
async def test_admin_registers_supporters_and_support_workers(
    api: Api, db: AsyncSession, world: World, cls: str, typename: str
) -> None:
    data = await api.data(
        REGISTER_MEMBER,
        {
            "input": {
                "name": "Sue Porter",
                "membershipClass": cls,
                "postcode": "en1 1aa",
            }
        },
        token=as_admin(api),
    )
    pk = pk_of(data)
    member = await db.get(Member, pk)
    assert member is not None
    assert (member.membership_class, member.postcode) == (cls, "EN1 1AA")
    assert await db.get(PaProfile, pk) is None
    body = await api.data(
        "query($id: ID!) { node(id: $id) { __typename } }",
        {"id": result(data)["member"]["id"]},
        token=as_admin(api),
    )
    assert body["node"]["__typename"] == typename


@pytest.mark.parametrize("cls", ["SERVICE_USER", "CARER"])
async def test_register_member_refuses_service_users_and_carers(
    api: Api, db: AsyncSession, world: World, cls: str
) -> None:
    before = await snapshot(db)
    data = await api.data(
        REGISTER_MEMBER, {"input": {"name": "X", "membershipClass": cls}}, token=as_admin(api)
    )
    assert errors(data) == [("membershipClass", "INVALID")]
    assert await snapshot(db) == before


async def test_coordinators_may_not_register_other_members(
    api: Api, db: AsyncSession, world: World
) -> None:
    before = await snapshot(db)
    refused = await api.refused(
        REGISTER_MEMBER,
        {"input": {"name": "X", "membershipClass": "SUPPORTER"}},
        token=as_coordinator(api, world),
    )
    assert refused == "FORBIDDEN"  # admins only: refused at the field
    assert await snapshot(db) == before


# --- who may register ------------------------------------------------------------------

REGISTRATIONS = [
    (REGISTER_SU, lambda w: su_input(clusterId=gid("Cluster", w.cluster_id))),
    (REGISTER_PA, lambda w: pa_input()),
    (REGISTER_CARER, lambda w: {"name": "C", "serviceUserIds": [gid("ServiceUser", w.su.id)]}),
    (REGISTER_MEMBER, lambda w: {"name": "S", "membershipClass": "SUPPORTER"}),
]


def caller_token(api: Api, w: World, role: Role) -> str:
    member = {Role.PA: w.pa.id, Role.SERVICE_USER: w.su.id, Role.CARER: w.carer.id}.get(role)
    if role is Role.LA_ANALYST:
        return api.token(role, la="E09000003")
    return api.token(role, member)


@pytest.mark.parametrize("role", [Role.PA, Role.SERVICE_USER, Role.CARER, Role.LA_ANALYST])
@pytest.mark.parametrize("mutation", range(len(REGISTRATIONS)))
async def test_other_roles_may_not_register_members(
    api: Api, db: AsyncSession, world: World, role: Role, mutation: int
) -> None:
    query, make_input = REGISTRATIONS[mutation]
    before = await snapshot(db)
    token = caller_token(api, world, role)
    assert await api.refused(query, {"input": make_input(world)}, token=token) == "FORBIDDEN"
    assert await snapshot(db) == before


@pytest.mark.parametrize("mutation", range(len(REGISTRATIONS)))
async def test_anonymous_callers_must_authenticate(
    api: Api, db: AsyncSession, world: World, mutation: int
) -> None:
    query, make_input = REGISTRATIONS[mutation]
    before = await snapshot(db)
    assert await api.refused(query, {"input": make_input(world)}) == "UNAUTHENTICATED"
    assert await snapshot(db) == before


# --- updating members --------------------------------------------------------------------


async def test_coordinator_updates_a_service_user_of_their_cluster(
    api: Api, db: AsyncSession, world: World
) -> None:
    data = await api.data(
        UPDATE_MEMBER,
        {
            "id": gid("ServiceUser", world.su.id),
            "input": {
                "name": " Ada Lovelace ",
                "email": None,
                "postcode": "n3 1aa",
                "location": {"latitude": 51.6, "longitude": -0.19},
                "active": False,
            },
        },
        token=as_coordinator(api, world),
    )
    assert result(data)["errors"] == []
    assert result(data)["member"] == {
        "id": gid("ServiceUser", world.su.id),
        "name": "Ada Lovelace",
        "email": None,
        "phone": "07700 900001",
        "postcode": "N3 1AA",
        "latitude": 51.6,
        "longitude": -0.19,
        "active": False,
    }
    row = (
        await db.execute(select(Member.email, Member.active).where(Member.id == world.su.id))
    ).one()
    assert tuple(row) == (None, False)


async def test_coordinator_cannot_update_a_service_user_outside_their_clusters(
    api: Api, db: AsyncSession, world: World
) -> None:
    before = await snapshot(db)
    token = as_coordinator(api, world)
    target = gid("ServiceUser", world.other_su.id)
    for query, variables in [
        (UPDATE_MEMBER, {"id": target, "input": {"phone": "0"}}),
        (UPDATE_SU, {"id": target, "input": {"plannedWeeklyHours": 3}}),
    ]:
        data = await api.data(query, variables, token=token)
        assert errors(data) == [("id", "NOT_FOUND")]
    assert await snapshot(db) == before


async def test_a_member_updates_their_own_phone(api: Api, db: AsyncSession, world: World) -> None:
    token = api.token(Role.PA, world.pa.id)
    data = await api.data(
        UPDATE_MEMBER,
        {"id": gid("PersonalAssistant", world.pa.id), "input": {"phone": " 07700 900999 "}},
        token=token,
    )
    assert result(data)["errors"] == []
    assert result(data)["member"]["phone"] == "07700 900999"
    phone = await db.scalar(select(Member.phone).where(Member.id == world.pa.id))
    assert phone == "07700 900999"


@pytest.mark.parametrize("role", [Role.PA, Role.COORDINATOR])
async def test_a_member_may_not_change_their_own_active_flag(
    api: Api, db: AsyncSession, world: World, role: Role
) -> None:
    me = world.pa if role is Role.PA else world.coordinator
    type_name = "PersonalAssistant" if role is Role.PA else "CoopMember"
    before = await snapshot(db)
    data = await api.data(
        UPDATE_MEMBER,
        {"id": gid(type_name, me.id), "input": {"active": False, "phone": "1"}},
        token=api.token(role, me.id),
    )
    assert errors(data) == [("active", "FORBIDDEN")]
    assert await snapshot(db) == before


async def test_a_pa_may_not_update_a_teammate(api: Api, db: AsyncSession, world: World) -> None:
    before = await snapshot(db)
    data = await api.data(
        UPDATE_MEMBER,
        {"id": gid("PersonalAssistant", world.teammate.id), "input": {"phone": "1"}},
        token=api.token(Role.PA, world.pa.id),
    )
    assert errors(data) == [("id", "FORBIDDEN")]  # they can see the teammate, not change them
    assert await snapshot(db) == before


@pytest.mark.parametrize(
    ("changes", "expected"),
    [
        ({"name": ""}, ("name", "REQUIRED")),
        ({"email": "a@b"}, ("email", "INVALID")),
        ({"postcode": "ZZZ"}, ("postcode", "INVALID")),
        ({"location": {"latitude": 0, "longitude": 181}}, ("location", "INVALID")),
    ],
)
async def test_update_member_validation_writes_nothing(
    api: Api, db: AsyncSession, world: World, changes: dict[str, Any], expected: tuple[str, str]
) -> None:
    before = await snapshot(db)
    data = await api.data(
        UPDATE_MEMBER,
        {"id": gid("Carer", world.carer.id), "input": changes},
        token=api.token(Role.CARER, world.carer.id),
    )
    assert errors(data) == [expected]
    assert await snapshot(db) == before


async def test_unknown_member_is_not_found(api: Api, db: AsyncSession, world: World) -> None:
    data = await api.data(
        UPDATE_MEMBER,
        {"id": gid("CoopMember", 987654), "input": {"name": "X"}},
        token=as_admin(api),
    )
    assert errors(data) == [("id", "NOT_FOUND")]


async def test_coordinator_updates_a_service_users_care_details(
    api: Api, db: AsyncSession, world: World
) -> None:
    data = await api.data(
        UPDATE_SU,
        {
            "id": gid("ServiceUser", world.su.id),
            "input": {
                "funding": "NHS_CHC",
                "needs": ["Dementia", "dementia", ""],
                "plannedWeeklyHours": 20,
            },
        },
        token=as_coordinator(api, world),
    )
    assert result(data)["errors"] == []
    person = await node(api, SERVICE_USER, "ServiceUser", world.su.id)
    assert (person["funding"], person["needs"], person["plannedWeeklyHours"]) == (
        "NHS_CHC",
        ["dementia"],
        20.0,
    )


@pytest.mark.parametrize("role", [Role.SERVICE_USER, Role.PA])
async def test_care_details_are_for_admins_and_coordinators(
    api: Api, db: AsyncSession, world: World, role: Role
) -> None:
    before = await snapshot(db)
    refused = await api.refused(
        UPDATE_SU,
        {"id": gid("ServiceUser", world.su.id), "input": {"plannedWeeklyHours": 40}},
        token=caller_token(api, world, role),
    )
    assert refused == "FORBIDDEN"
    assert await snapshot(db) == before


async def test_update_service_user_validation_writes_nothing(
    api: Api, db: AsyncSession, world: World
) -> None:
    before = await snapshot(db)
    data = await api.data(
        UPDATE_SU,
        {"id": gid("ServiceUser", world.su.id), "input": {"plannedWeeklyHours": 169}},
        token=as_admin(api),
    )
    assert errors(data) == [("plannedWeeklyHours", "INVALID")]
    not_su = await api.data(
        UPDATE_SU,
        {"id": gid("ServiceUser", world.pa.id), "input": {"plannedWeeklyHours": 1}},
        token=as_admin(api),
    )
    assert errors(not_su) == [("id", "NOT_FOUND")]
    assert await snapshot(db) == before


async def test_coordinator_updates_a_pa_and_replaces_their_skills(
    api: Api, db: AsyncSession, world: World
) -> None:
    data = await api.data(
        UPDATE_PA,
        {
            "id": gid("PersonalAssistant", world.pa.id),
            "input": {
                "dbsCheckedOn": None,
                "contractedWeeklyHours": 16,
                "hourlyPayPence": 1400,
                "maxTravelKm": 0,
                "workingTimeOptOut": True,
                "skills": [{"name": "first-aid", "expiresOn": "2026-12-31"}, {"name": "Dementia"}],
            },
        },
        token=as_coordinator(api, world),
    )
    assert result(data)["errors"] == []
    pa = await node(api, PERSONAL_ASSISTANT, "PersonalAssistant", world.pa.id)
    assert {
        k: pa[k]
        for k in (
            "dbsCheckedOn",
            "contractedWeeklyHours",
            "hourlyPayPence",
            "maxTravelKm",
            "workingTimeOptOut",
            "skills",
        )
    } == {
        "dbsCheckedOn": None,
        "contractedWeeklyHours": 16.0,
        "hourlyPayPence": 1400,
        "maxTravelKm": 0.0,
        "workingTimeOptOut": True,
        "skills": [
            {"name": "dementia", "expiresOn": None},
            {"name": "first-aid", "expiresOn": "2026-12-31"},
        ],
    }


async def test_update_pa_leaves_out_fields_alone(api: Api, db: AsyncSession, world: World) -> None:
    data = await api.data(
        UPDATE_PA,
        {"id": gid("PersonalAssistant", world.pa.id), "input": {"hourlyPayPence": 1500}},
        token=as_admin(api),
    )
    assert result(data)["errors"] == []
    pa = await node(api, PERSONAL_ASSISTANT, "PersonalAssistant", world.pa.id)
    assert pa["hourlyPayPence"] == 1500
    assert pa["dbsCheckedOn"] == dt.date.today().isoformat()
    assert pa["skills"] == [{"name": "hoist", "expiresOn": None}]


@pytest.mark.parametrize(
    ("changes", "expected"),
    [
        ({"skills": [{"name": "a"}, {"name": "A"}]}, ("skills", "INVALID")),
        ({"hourlyPayPence": 0}, ("hourlyPayPence", "INVALID")),
        ({"maxTravelKm": -0.1}, ("maxTravelKm", "INVALID")),
        ({"contractedWeeklyHours": -2}, ("contractedWeeklyHours", "INVALID")),
    ],
)
async def test_update_pa_validation_writes_nothing(
    api: Api, db: AsyncSession, world: World, changes: dict[str, Any], expected: tuple[str, str]
) -> None:
    before = await snapshot(db)
    data = await api.data(
        UPDATE_PA,
        {"id": gid("PersonalAssistant", world.pa.id), "input": changes},
        token=as_admin(api),
    )
    assert errors(data) == [expected]
    assert await snapshot(db) == before


async def test_a_pa_may_not_change_their_own_pay(api: Api, db: AsyncSession, world: World) -> None:
    before = await snapshot(db)
    refused = await api.refused(
        UPDATE_PA,
        {"id": gid("PersonalAssistant", world.pa.id), "input": {"hourlyPayPence": 9999}},
        token=api.token(Role.PA, world.pa.id),
    )
    assert refused == "FORBIDDEN"
    assert await snapshot(db) == before


# --- carers and regular PAs --------------------------------------------------------------


async def carer_links(db: AsyncSession) -> set[tuple[int, int, str | None]]:
    rows = await db.execute(
        select(CarerLink.carer_id, CarerLink.service_user_id, CarerLink.relationship)
    )
    links = {(r[0], r[1], r[2]) for r in rows}
    await db.commit()
    return links


async def test_link_and_unlink_a_carer(api: Api, db: AsyncSession, world: World) -> None:
    cluster = await db.get_one(Cluster, world.cluster_id)
    second = await Build(db).service_user("Cy Second", cluster=cluster)
    await db.commit()
    token = as_coordinator(api, world)
    carer, su = gid("Carer", world.carer.id), gid("ServiceUser", second.id)
    data = await api.data(LINK_CARER, {"carer": carer, "su": su, "rel": "niece"}, token=token)
    assert result(data)["errors"] == [] and result(data)["member"]["id"] == su
    assert (world.carer.id, second.id, "niece") in await carer_links(db)
    again = await api.data(LINK_CARER, {"carer": carer, "su": su, "rel": "sister"}, token=token)
    assert result(again)["errors"] == []
    assert (world.carer.id, second.id, "sister") in await carer_links(db)
    person = await api.data(SERVICE_USER, {"id": su}, token=token)
    assert person["node"]["carers"] == [{"id": carer}]

    data = await api.data(UNLINK_CARER, {"carer": carer, "su": su}, token=token)
    assert result(data)["errors"] == []
    assert {(c, s) for c, s, _ in await carer_links(db)} == {(world.carer.id, world.su.id)}
    data = await api.data(UNLINK_CARER, {"carer": carer, "su": su}, token=token)
    assert errors(data) == [("carerId", "NOT_FOUND")]


async def test_coordinator_cannot_link_carers_outside_their_clusters(
    api: Api, db: AsyncSession, world: World
) -> None:
    before = await snapshot(db)
    token = as_coordinator(api, world)
    outside = await api.data(
        LINK_CARER,
        {"carer": gid("Carer", world.carer.id), "su": gid("ServiceUser", world.other_su.id)},
        token=token,
    )
    assert errors(outside) == [("serviceUserId", "NOT_FOUND")]
    not_a_carer = await api.data(
        LINK_CARER,
        {"carer": gid("Carer", world.pa.id), "su": gid("ServiceUser", world.su.id)},
        token=token,
    )
    assert errors(not_a_carer) == [("carerId", "NOT_FOUND")]
    by_carer = await api.refused(
        UNLINK_CARER,
        {"carer": gid("Carer", world.carer.id), "su": gid("ServiceUser", world.su.id)},
        token=api.token(Role.CARER, world.carer.id),
    )
    assert by_carer == "FORBIDDEN"
    assert await snapshot(db) == before


async def test_set_regular_pas_replaces_the_set(api: Api, db: AsyncSession, world: World) -> None:
    token = as_coordinator(api, world)
    su = gid("ServiceUser", world.su.id)
    pa, mate = gid("PersonalAssistant", world.pa.id), gid("PersonalAssistant", world.teammate.id)
    data = await api.data(SET_REGULARS, {"su": su, "pas": [pa, mate, pa]}, token=token)
    assert result(data)["errors"] == []
    person = await api.data(SERVICE_USER, {"id": su}, token=token)
    assert {p["id"] for p in person["node"]["regularPersonalAssistants"]} == {pa, mate}

    await api.data(SET_REGULARS, {"su": su, "pas": [mate]}, token=token)
    rows = await db.execute(select(RegularPa.service_user_id, RegularPa.pa_id))
    assert {tuple(r) for r in rows} == {(world.su.id, world.teammate.id)}
    await db.commit()

    await api.data(SET_REGULARS, {"su": su, "pas": []}, token=token)
    assert list(await db.scalars(select(RegularPa.pa_id))) == []


async def test_set_regular_pas_checks_every_id(api: Api, db: AsyncSession, world: World) -> None:
    await api.data(
        SET_REGULARS,
        {"su": gid("ServiceUser", world.su.id), "pas": [gid("PersonalAssistant", world.pa.id)]},
        token=as_admin(api),
    )
    before = await snapshot(db)
    token = as_coordinator(api, world)
    unknown = await api.data(
        SET_REGULARS,
        {
            "su": gid("ServiceUser", world.su.id),
            "pas": [gid("PersonalAssistant", world.teammate.id), gid("PersonalAssistant", 5555)],
        },
        token=token,
    )
    assert errors(unknown) == [("paIds", "NOT_FOUND")]
    outside = await api.data(
        SET_REGULARS, {"su": gid("ServiceUser", world.other_su.id), "pas": []}, token=token
    )
    assert errors(outside) == [("serviceUserId", "NOT_FOUND")]
    assert await snapshot(db) == before


async def test_coordinator_changes_only_the_pas_on_their_teams(
    api: Api, db: AsyncSession, world: World
) -> None:
    """Coordinators read every PA's contact details (to plan cover), but another cluster's
    PA is not theirs to change: not their record, pay, skills or membership."""
    other = await db.get_one(Cluster, world.other_cluster_id)
    theirs = await Build(db).pa("Pip Elsewhere", cluster=other)
    theirs_id = gid("PersonalAssistant", theirs.id)
    await db.commit()
    before = await snapshot(db)
    token = as_coordinator(api, world)
    for query, changes in (
        (UPDATE_MEMBER, {"phone": "07700 900999", "active": False}),
        (UPDATE_PA, {"hourlyPayPence": 1, "skills": []}),
    ):
        data = await api.data(query, {"id": theirs_id, "input": changes}, token=token)
        assert errors(data) == [("id", "FORBIDDEN")]
        assert result(data)["member"] is None
    assert await snapshot(db) == before
