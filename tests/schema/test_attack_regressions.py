"""Holes found by attacking the merged issue 6 as each kind of caller (see the issue's
"Close every door"). Each test failed before its fix."""

from __future__ import annotations

import datetime as dt
from typing import Any

import pytest
from sqlalchemy import func, select
from sqlalchemy.ext.asyncio import AsyncSession

from care.enums import Role
from care.models import Absence, ClusterPa, Member, Pool
from tests.conftest import Api
from tests.factories import Build, at, gid


async def pool_count(db: AsyncSession) -> int:
    return int(await db.scalar(select(func.count()).select_from(Pool)) or 0)


@pytest.mark.parametrize(
    ("selection", "variables"),
    [
        ("personalAssistants(first: 0) { totalCount }", {}),
        ("personalAssistants(first: $n) { totalCount }", {"n": 101}),
        ("personalAssistants(first: $n) { totalCount }", {"n": -1}),
        ('personalAssistants(after: "not a cursor") { totalCount }', {}),
        ("personalAssistants(after: $c) { totalCount }", {"c": "W3sidCI6IngifV0"}),
    ],
)
async def test_a_bad_page_request_in_a_mutation_payload_is_refused_before_the_write(
    api: Api, db: AsyncSession, selection: str, variables: dict[str, Any]
) -> None:
    """Page sizes and cursors were checked only when the connection resolved: in a
    mutation's payload that is after the commit, so the answer was a BAD_USER_INPUT
    error (read as "refused") for a change that was in fact saved; a retry saved it
    twice. Now they are input bounds, refused before anything runs."""
    declared = ", ".join(
        f"${name}: {'Int' if name == 'n' else 'String'}" for name in sorted(variables)
    )
    document = (
        f'mutation{f"({declared})" if declared else ""} {{ createPool(input: {{name: "P"}}) '
        f"{{ pool {{ id {selection} }} errors {{ code }} }} }}"
    )
    before = await pool_count(db)
    body = await api.query(document, variables, token=api.token(Role.ADMIN))
    assert body["data"] is None, body
    assert [e["extensions"]["code"] for e in body["errors"]] == ["BAD_USER_INPUT"]
    assert await pool_count(db) == before


async def test_page_bounds_are_checked_before_any_sql_on_queries_too(
    api: Api, db: AsyncSession
) -> None:
    await Build(db).las()
    await db.commit()
    body = await api.query(
        "query($n: Int) { clusters(first: $n) { totalCount } }",
        {"n": 0},
        token=api.token(Role.ADMIN),
    )
    assert body["data"] is None
    assert body["errors"][0]["extensions"]["code"] == "BAD_USER_INPUT"
    assert "between 1 and" in body["errors"][0]["message"]


async def test_an_error_inside_a_committed_payload_says_it_was_committed(
    api: Api, db: AsyncSession
) -> None:
    """A nested field of the payload that fails once the change is committed (here a
    busy-time range over the 62-day bound, which only the field itself checks) answered
    a bare BAD_USER_INPUT: read as a refusal, retried, booked twice. It now carries
    `extensions.committed: true`, and the field's own data stays."""
    b = Build(db)
    await b.las()
    pa = await b.pa("Pat Assist")
    await db.commit()
    body = await api.query(
        """mutation($id: ID!) { updatePersonalAssistant(id: $id, input: {maxTravelKm: 7}) {
             member { ... on PersonalAssistant { maxTravelKm
               busyPeriods(startsFrom: "2027-01-01T00:00:00Z",
                           startsBefore: "2027-06-01T00:00:00Z") { startsAt } } }
             errors { code } } }""",
        {"id": gid("PersonalAssistant", pa.id)},
        token=api.token(Role.ADMIN),
    )
    payload = body["data"]["updatePersonalAssistant"]
    assert payload["errors"] == [] and payload["member"]["maxTravelKm"] == 7
    [error] = body["errors"]
    assert error["path"][0] == "updatePersonalAssistant"
    assert error["extensions"]["code"] == "BAD_USER_INPUT"
    assert error["extensions"]["committed"] is True


async def test_a_refused_field_is_not_marked_committed(api: Api, db: AsyncSession) -> None:
    b = Build(db)
    await b.las()
    worker = await b.worker()
    await db.commit()
    body = await api.query(
        """mutation { a: createPool(input: {name: "Ok"}) { pool { id } errors { code } }
                      b: registerMember(input: {name: "x", membershipClass: SUPPORTER}) {
                        errors { code } } }""",
        token=api.token(Role.COORDINATOR, worker.id),
    )
    assert body["data"]["a"]["errors"] == [] and body["data"]["b"] is None
    [error] = body["errors"]
    assert error["extensions"]["code"] == "FORBIDDEN" and "committed" not in error["extensions"]


POOL_WRITES = """
mutation($pool: ID!, $cluster: ID!) {
  addClusterToPool(poolId: $pool, clusterId: $cluster) { errors { code field } }
}"""


async def test_a_coordinator_cannot_take_over_a_staffed_pool_that_serves_no_cluster(
    api: Api, db: AsyncSession
) -> None:
    """A pool that serves no cluster is the admins' (`may_manage_pool`), yet a coordinator
    made it theirs in one step by adding their own cluster: then renamed it, shared it
    with partners and removed its PAs. Giving a pool with PAs its first cluster is now for
    admins; a fresh pool (no PAs) still takes its creator's cluster."""
    b = Build(db)
    await b.las()
    coordinator = await b.worker("Cora")
    mine = await b.cluster("Mine", support_worker=coordinator)
    pa = await b.pa("Pat")
    staffed = await b.pool("Admins' spare", pas=[pa])
    fresh = await b.pool("Fresh")
    await db.commit()
    token = api.token(Role.COORDINATOR, coordinator.id)

    body = await api.data(
        POOL_WRITES,
        {"pool": gid("Pool", staffed.id), "cluster": gid("Cluster", mine.id)},
        token=token,
    )
    assert body["addClusterToPool"]["errors"] == [{"code": "FORBIDDEN", "field": "poolId"}]
    changed = await api.data(
        'mutation($id: ID!) { updatePool(id: $id, input: {name: "Mine now"}) { errors { code } } }',
        {"id": gid("Pool", staffed.id)},
        token=token,
    )
    assert changed["updatePool"]["errors"] == [{"code": "FORBIDDEN"}]

    body = await api.data(
        POOL_WRITES,
        {"pool": gid("Pool", fresh.id), "cluster": gid("Cluster", mine.id)},
        token=token,
    )
    assert body["addClusterToPool"]["errors"] == []
    body = await api.data(
        POOL_WRITES,
        {"pool": gid("Pool", staffed.id), "cluster": gid("Cluster", mine.id)},
        token=api.token(Role.ADMIN),
    )
    assert body["addClusterToPool"]["errors"] == []


NESTED_PAGES = """query($n: Int) { visits(first: $n) { nodes {
  pa { visits(first: $n) { nodes { id } } } } } }"""


async def test_a_page_size_passed_as_a_whole_float_is_costed_as_the_integer(
    api: Api, db: AsyncSession
) -> None:
    """GraphQL coerces 100.0 to the Int 100, but the cost counted a float `first` as
    absent (the default 20): two nested pages cost a 25th of their work, so a query
    doing 23x the allowed work passed. Both must be costed alike."""
    await Build(db).las()
    await db.commit()
    token = api.token(Role.ADMIN)
    as_int = await api.query(NESTED_PAGES, {"n": 100}, token=token)
    as_float = await api.query(NESTED_PAGES, {"n": 100.0}, token=token)
    assert as_float["extensions"]["cost"] == as_int["extensions"]["cost"]
    assert as_float["errors"][0]["extensions"]["code"] == "QUERY_TOO_COSTLY"
    refused = await api.query(
        "query($n: Int) { clusters(first: $n) { totalCount } }", {"n": 0.0}, token=token
    )
    assert refused["data"] is None
    assert refused["errors"][0]["extensions"]["code"] == "BAD_USER_INPUT"


async def test_a_deactivated_pa_cannot_be_booked(api: Api, db: AsyncSession) -> None:
    """Deactivating a PA cut their tokens, but visits could still be booked (or assigned,
    or booked as a series) with them: a PA who cannot sign in to see the visit, so the
    person gets no one. Cover candidates already left inactive PAs out."""
    b = Build(db)
    await b.las()
    coordinator = await b.worker("Cora")
    cluster = await b.cluster(support_worker=coordinator)
    su = await b.service_user(cluster=cluster)
    pa = await b.pa(cluster=cluster)
    pa.active = False
    waiting = await b.visit(su, None, at(days=2))
    await db.commit()
    token = api.token(Role.COORDINATOR, coordinator.id)
    starts = at(days=3)
    booked = await api.data(
        """mutation($su: ID!, $pa: ID!, $s: DateTime!, $e: DateTime!) {
             scheduleVisit(input: {serviceUserId: $su, paId: $pa, startsAt: $s, endsAt: $e}) {
               visit { id } errors { code field } } }""",
        {
            "su": gid("ServiceUser", su.id),
            "pa": gid("PersonalAssistant", pa.id),
            "s": starts.isoformat(),
            "e": (starts + dt.timedelta(hours=1)).isoformat(),
        },
        token=token,
    )
    assert booked["scheduleVisit"] == {
        "visit": None,
        "errors": [{"code": "INVALID", "field": "paId"}],
    }
    assigned = await api.data(
        """mutation($v: ID!, $pa: ID!) { assignVisitPa(id: $v, paId: $pa) {
             visit { id } errors { code field } } }""",
        {"v": gid("Visit", waiting.id), "pa": gid("PersonalAssistant", pa.id)},
        token=token,
    )
    assert assigned["assignVisitPa"]["errors"] == [{"code": "INVALID", "field": "paId"}]


async def test_a_booking_refusal_does_not_tell_why_another_teams_pa_is_away(
    api: Api, db: AsyncSession
) -> None:
    """A coordinator may book a pool PA who is not on their team, and sees that PA's busy
    time but not their absences. The OVERLAP message named the absence's kind ("is away
    (sickness)"), which `absences` hides from them. Now it says only when."""
    b = Build(db)
    await b.las()
    coordinator = await b.worker("Cora")
    mine = await b.cluster("Mine", support_worker=coordinator)
    theirs = await b.cluster("Theirs", support_worker=await b.worker("Other"))
    su = await b.service_user(cluster=mine)
    pa = await b.pa("Pat Pool", cluster=theirs)
    await b.pool("Shared", pas=[pa], clusters=[mine, theirs])
    await db.commit()
    admin = api.token(Role.ADMIN)
    start = at(days=5).replace(hour=0, minute=0)
    await api.data(
        """mutation($pa: ID!, $s: DateTime!, $e: DateTime!) { recordAbsence(input: {
             paId: $pa, kind: SICKNESS, startsAt: $s, endsAt: $e}) { errors { code } } }""",
        {
            "pa": gid("PersonalAssistant", pa.id),
            "s": start.isoformat(),
            "e": (start + dt.timedelta(days=2)).isoformat(),
        },
        token=admin,
    )
    visit_at = start + dt.timedelta(days=1, hours=10)
    out = await api.data(
        """mutation($su: ID!, $pa: ID!, $s: DateTime!, $e: DateTime!) {
             scheduleVisit(input: {serviceUserId: $su, paId: $pa, startsAt: $s, endsAt: $e}) {
               errors { code field message } } }""",
        {
            "su": gid("ServiceUser", su.id),
            "pa": gid("PersonalAssistant", pa.id),
            "s": visit_at.isoformat(),
            "e": (visit_at + dt.timedelta(hours=1)).isoformat(),
        },
        token=api.token(Role.COORDINATOR, coordinator.id),
    )
    [error] = out["scheduleVisit"]["errors"]
    assert error["code"] == "OVERLAP" and error["field"] == "paId"
    assert error["message"].startswith("Pat Pool is away from "), error["message"]
    assert "sickness" not in error["message"].lower()


async def test_a_coordinator_cannot_overwrite_an_absence_note_they_may_not_read(
    api: Api, db: AsyncSession
) -> None:
    """An absence's note (it may hold health details) is read by the PA and admins only,
    yet the PA's coordinator could replace or blank the PA's note unseen with
    `updateAbsence`. (A coordinator who recorded the absence still sets its note.)"""
    b = Build(db)
    await b.las()
    coordinator = await b.worker("Cora")
    cluster = await b.cluster(support_worker=coordinator)
    pa = await b.pa(cluster=cluster)
    await db.commit()
    start = at(days=10).replace(hour=0, minute=0)
    recorded = await api.data(
        """mutation($pa: ID!, $s: DateTime!, $e: DateTime!) { recordAbsence(input: {
             paId: $pa, kind: SICKNESS, startsAt: $s, endsAt: $e, note: "surgery"}) {
             absence { id } errors { code } } }""",
        {
            "pa": gid("PersonalAssistant", pa.id),
            "s": start.isoformat(),
            "e": (start + dt.timedelta(days=1)).isoformat(),
        },
        token=api.token(Role.PA, pa.id),
    )
    absence_id = recorded["recordAbsence"]["absence"]["id"]
    update = """mutation($id: ID!, $note: String) { updateAbsence(id: $id, input: {note: $note})
                  { absence { note } errors { code field } } }"""
    refused = await api.data(
        update,
        {"id": absence_id, "note": ""},
        token=api.token(Role.COORDINATOR, coordinator.id),
    )
    assert refused["updateAbsence"]["errors"] == [{"code": "FORBIDDEN", "field": "note"}]
    pa_id = pa.id
    db.expire_all()
    stored = await db.scalar(select(Absence.note).where(Absence.pa_id == pa_id))
    assert stored == "surgery"
    own = await api.data(
        update, {"id": absence_id, "note": "surgery, then rest"}, token=api.token(Role.PA, pa_id)
    )
    assert own["updateAbsence"] == {"absence": {"note": "surgery, then rest"}, "errors": []}


async def test_a_coordinator_cannot_take_or_change_another_clusters_coordinator(
    api: Api, db: AsyncSession
) -> None:
    """A support worker may also be a PA. Such a PA on no team and in no pool counted as
    working for no one else, so a coordinator took them onto their team and then, as the
    PA's manager, deactivated them (cutting the other cluster's coordinator off) or
    rewrote their email. Now a PA who runs another cluster works for others, and their
    record is for admins (or the clusters' own coordinator) to change."""
    b = Build(db)
    await b.las()
    coordinator = await b.worker("Cora")
    mine = await b.cluster("Mine", support_worker=coordinator)
    dual = await b.pa("Dual Role")
    await b.cluster("Theirs", support_worker=dual)
    shared = await b.pa("Shared Dual")
    await b.cluster("Also theirs", support_worker=shared)
    await b._add(ClusterPa(cluster_id=mine.id, pa_id=shared.id))  # an admin put them there
    await db.commit()
    token = api.token(Role.COORDINATOR, coordinator.id)

    taken = await api.data(
        """mutation($c: ID!, $p: ID!) { addPersonalAssistantToCluster(clusterId: $c, paId: $p)
             { errors { code field } } }""",
        {"c": gid("Cluster", mine.id), "p": gid("PersonalAssistant", dual.id)},
        token=token,
    )
    assert taken["addPersonalAssistantToCluster"]["errors"] == [
        {"code": "FORBIDDEN", "field": "paId"}
    ]
    changed = await api.data(
        """mutation($p: ID!) { updateMember(id: $p, input: {active: false, email: "x@y.org"})
             { errors { code field } } }""",
        {"p": gid("PersonalAssistant", shared.id)},
        token=token,
    )
    assert changed["updateMember"]["errors"] == [{"code": "FORBIDDEN", "field": "id"}]
    shared_id = shared.id
    db.expire_all()
    assert await db.scalar(select(Member.active).where(Member.id == shared_id)) is True
