"""Personal data is denied by default: each read path, as each kind of caller."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import pytest
from sqlalchemy.ext.asyncio import AsyncSession

from care.enums import Role
from tests.conftest import Api
from tests.factories import Build, at, gid

PERSON = """
query($id: ID!) {
  node(id: $id) {
    ... on ServiceUser { name needs email phone postcode latitude longitude funding
                         plannedWeeklyHours }
  }
}"""

VISITS = "{ visits(first: 50) { totalCount edges { node { id tasks serviceUser { name } } } } }"
MEMBERS = "{ members(first: 100) { totalCount edges { node { id name } } } }"


@dataclass
class World:
    su: Any
    other_su: Any
    carer: Any
    coordinator: Any
    other_coordinator: Any
    pa_with_visit: Any
    pa_far_visit: Any
    pa_on_team: Any
    pa_stranger: Any
    visit: Any


@pytest.fixture
async def world(db: AsyncSession) -> World:
    b = Build(db)
    await b.las()
    await b.coop()
    coordinator = await b.worker("Cora Ordinator")
    other_coordinator = await b.worker("Otto Ordinator")
    cluster = await b.cluster("Finchley", support_worker=coordinator)
    other = await b.cluster("Barnet East", support_worker=other_coordinator)
    su = await b.service_user("Ada User", needs=["hoist"], cluster=cluster)
    other_su = await b.service_user("Bob Other", cluster=other, email="bob@example.org")
    carer = await b.carer(su)
    pa_with_visit = await b.pa("Pat Near", cluster=cluster)
    pa_far_visit = await b.pa("Pam Far", cluster=cluster)
    pa_on_team = await b.pa("Tim Team", cluster=cluster)
    pa_stranger = await b.pa("Sid Stranger", cluster=other)
    visit = await b.visit(su, pa_with_visit, at(days=1), tasks=["hoist transfer"])
    await b.visit(su, pa_far_visit, at(days=20), tasks=["shopping"])
    await b.visit(other_su, pa_stranger, at(days=1), tasks=["lunch"])
    await db.commit()
    return World(
        su,
        other_su,
        carer,
        coordinator,
        other_coordinator,
        pa_with_visit,
        pa_far_visit,
        pa_on_team,
        pa_stranger,
        visit,
    )


async def person(api: Api, w: World, token: str | None) -> dict[str, Any] | None:
    body = await api.query(PERSON, {"id": gid("ServiceUser", w.su.id)}, token=token)
    assert not body.get("errors"), body
    node: dict[str, Any] | None = body["data"]["node"]
    return node


PERSONAL_FIELDS = (
    "email",
    "phone",
    "postcode",
    "latitude",
    "longitude",
    "funding",
    "plannedWeeklyHours",
)


def assert_full(node: dict[str, Any] | None) -> None:
    assert node is not None
    assert node["name"] == "Ada User"
    assert node["email"] == "ada@example.org"
    assert node["postcode"] == "N12 0AA"
    assert node["latitude"] == pytest.approx(51.615)
    assert node["funding"] == "DIRECT_PAYMENT"


def assert_name_only(node: dict[str, Any] | None) -> None:
    assert node is not None
    assert node["name"] == "Ada User"
    assert node["needs"] == ["hoist"]
    for field in PERSONAL_FIELDS:
        assert node[field] is None, field


@pytest.mark.parametrize("who", ["self", "carer", "coordinator", "admin", "pa_with_visit"])
async def test_people_allowed_read_personal_data(api: Api, world: World, who: str) -> None:
    token = {
        "self": api.token(Role.SERVICE_USER, world.su.id),
        "carer": api.token(Role.CARER, world.carer.id),
        "coordinator": api.token(Role.COORDINATOR, world.coordinator.id),
        "admin": api.token(Role.ADMIN),
        "pa_with_visit": api.token(Role.PA, world.pa_with_visit.id),
    }[who]
    assert_full(await person(api, world, token))


async def test_pa_on_team_without_a_visit_sees_name_and_needs_only(api: Api, world: World) -> None:
    assert_name_only(await person(api, world, api.token(Role.PA, world.pa_on_team.id)))


async def test_pa_whose_visit_is_beyond_14_days_sees_name_and_needs_only(
    api: Api, world: World
) -> None:
    assert_name_only(await person(api, world, api.token(Role.PA, world.pa_far_visit.id)))


@pytest.mark.parametrize(
    "who", ["pa_stranger", "other_su", "other_coordinator", "analyst", "anonymous"]
)
async def test_strangers_cannot_see_the_person_at_all(api: Api, world: World, who: str) -> None:
    token = {
        "pa_stranger": api.token(Role.PA, world.pa_stranger.id),
        "other_su": api.token(Role.SERVICE_USER, world.other_su.id),
        "other_coordinator": api.token(Role.COORDINATOR, world.other_coordinator.id),
        "analyst": api.tokens.issue(Role.LA_ANALYST, la_code="E09000003"),
        "anonymous": None,
    }[who]
    assert await person(api, world, token) is None


async def test_unknown_and_forbidden_look_the_same(api: Api, world: World) -> None:
    token = api.token(Role.PA, world.pa_stranger.id)
    hidden = await api.query(PERSON, {"id": gid("ServiceUser", world.su.id)}, token=token)
    unknown = await api.query(PERSON, {"id": gid("ServiceUser", 999999)}, token=token)
    assert hidden == unknown


async def test_member_lists_respect_the_rules(api: Api, world: World) -> None:
    def names(data: dict[str, Any]) -> set[str]:
        return {e["node"]["name"] for e in data["members"]["edges"]}

    stranger = await api.data(MEMBERS, token=api.token(Role.PA, world.pa_stranger.id))
    assert "Ada User" not in names(stranger)
    assert stranger["members"]["totalCount"] == len(stranger["members"]["edges"])
    su = await api.data(MEMBERS, token=api.token(Role.SERVICE_USER, world.su.id))
    # Themselves, their carer, the PAs who visit them and their cluster's support worker.
    assert names(su) == {"Ada User", "Cara Carer", "Pat Near", "Pam Far", "Cora Ordinator"}
    admin = await api.data(MEMBERS, token=api.token(Role.ADMIN))
    assert admin["members"]["totalCount"] == 9


async def test_la_analyst_and_anonymous_get_no_member_list(api: Api, world: World) -> None:
    analyst = await api.query(MEMBERS, token=api.tokens.issue(Role.LA_ANALYST, la_code="E09000003"))
    assert analyst["data"] is None
    assert analyst["errors"][0]["extensions"]["code"] == "FORBIDDEN"
    anonymous = await api.query(MEMBERS)
    assert anonymous["errors"][0]["extensions"]["code"] == "UNAUTHENTICATED"


async def test_pas_see_only_their_own_visits(api: Api, world: World) -> None:
    on_team = await api.data(VISITS, token=api.token(Role.PA, world.pa_on_team.id))
    assert on_team["visits"]["totalCount"] == 0
    near = await api.data(VISITS, token=api.token(Role.PA, world.pa_with_visit.id))
    assert near["visits"]["totalCount"] == 1
    assert near["visits"]["edges"][0]["node"]["tasks"] == ["hoist transfer"]


async def test_visit_tasks_hidden_from_a_pa_beyond_the_window(api: Api, world: World) -> None:
    far = await api.data(VISITS, token=api.token(Role.PA, world.pa_far_visit.id))
    assert far["visits"]["totalCount"] == 1
    node = far["visits"]["edges"][0]["node"]
    assert node["tasks"] is None
    assert node["serviceUser"]["name"] == "Ada User"


@pytest.mark.parametrize(
    "who,count", [("self", 2), ("carer", 2), ("coordinator", 2), ("other_su", 1), ("analyst", None)]
)
async def test_visit_lists_per_role(api: Api, world: World, who: str, count: int | None) -> None:
    token = {
        "self": api.token(Role.SERVICE_USER, world.su.id),
        "carer": api.token(Role.CARER, world.carer.id),
        "coordinator": api.token(Role.COORDINATOR, world.coordinator.id),
        "other_su": api.token(Role.SERVICE_USER, world.other_su.id),
        "analyst": api.tokens.issue(Role.LA_ANALYST, la_code="E09000003"),
    }[who]
    body = await api.query(VISITS, token=token)
    if count is None:
        assert body["errors"][0]["extensions"]["code"] == "FORBIDDEN"
    else:
        assert body["data"]["visits"]["totalCount"] == count


async def test_visit_node_of_someone_else_is_null(api: Api, world: World) -> None:
    query = "query($id: ID!) { node(id: $id) { ... on Visit { tasks } } }"
    token = api.token(Role.PA, world.pa_on_team.id)
    body = await api.data(query, {"id": gid("Visit", world.visit.id)}, token=token)
    assert body["node"] is None


async def test_cluster_service_users_respect_the_rules(api: Api, world: World) -> None:
    query = """{ clusters { edges { node { name
        serviceUsers { totalCount edges { node { name email } } } } } } }"""
    data = await api.data(query, token=api.token(Role.PA, world.pa_on_team.id))
    clusters = {e["node"]["name"]: e["node"]["serviceUsers"] for e in data["clusters"]["edges"]}
    assert clusters["Finchley"]["totalCount"] == 1
    assert clusters["Finchley"]["edges"][0]["node"] == {"name": "Ada User", "email": None}
    assert clusters["Barnet East"]["totalCount"] == 0


async def test_availability_is_private_to_the_pa_and_managers(
    api: Api, world: World, db: AsyncSession
) -> None:
    await Build(db).window(world.pa_on_team, at(days=2))
    await db.commit()
    query = "{ availability { totalCount } }"
    own = await api.data(query, token=api.token(Role.PA, world.pa_on_team.id))
    other = await api.data(query, token=api.token(Role.PA, world.pa_stranger.id))
    su = await api.data(query, token=api.token(Role.SERVICE_USER, world.su.id))
    coordinator = await api.data(query, token=api.token(Role.COORDINATOR, world.coordinator.id))
    assert (own, other, su, coordinator) == (
        {"availability": {"totalCount": 1}},
        {"availability": {"totalCount": 0}},
        {"availability": {"totalCount": 0}},
        {"availability": {"totalCount": 1}},
    )


async def test_coordinators_read_pa_contacts_but_not_fellow_staff(api: Api, world: World) -> None:
    query = """query($id: ID!) { node(id: $id) { ... on Member { name email } } }"""
    token = api.token(Role.COORDINATOR, world.coordinator.id)
    colleague = await api.data(
        query, {"id": gid("CoopMember", world.other_coordinator.id)}, token=token
    )
    assert colleague["node"] == {"name": "Otto Ordinator", "email": None}
    pa = await api.data(query, {"id": gid("PersonalAssistant", world.pa_stranger.id)}, token=token)
    assert pa["node"] == {"name": "Sid Stranger", "email": "pat@example.org"}
