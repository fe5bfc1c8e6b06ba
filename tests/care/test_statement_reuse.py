"""Reused statements carry the values of the call, never those of an earlier viewer."""

from __future__ import annotations

import datetime as dt

from sqlalchemy.dialects import postgresql

from care import queries
from care.enums import Role
from care.models import ClusterServiceUser, Member, Visit
from care.paging import PageRequest
from care.viewer import Viewer


def params(stmt: object) -> dict[str, object]:
    compiled = stmt.compile(dialect=postgresql.dialect())  # type: ignore[attr-defined]
    return dict(compiled.params)


def test_second_viewer_gets_their_own_values() -> None:
    early = dt.datetime(2026, 1, 1, tzinfo=dt.UTC)
    late = dt.datetime(2026, 6, 1, tzinfo=dt.UTC)
    first = queries.members_by_id(Viewer(role=Role.PA, member_id=11, now=early), [1, 2])
    second = queries.members_by_id(Viewer(role=Role.PA, member_id=22, now=late), [3])
    assert params(first)["viewer_member_id"] == 11
    got = params(second)
    assert got["viewer_member_id"] == 22
    assert got["ids"] == [3]
    assert got["recent_from"] == late - dt.timedelta(days=7)


def test_pages_and_filters_follow_the_call() -> None:
    viewer = Viewer(role=Role.COORDINATOR, member_id=5)
    start = dt.datetime(2026, 3, 1, tzinfo=dt.UTC)

    def visits_of_pas(
        viewer: Viewer, ids: list[int], request: PageRequest, starts_from: dt.datetime
    ) -> object:
        values = {"starts_from": starts_from}
        return queries.paged_by_parent(
            viewer,
            ("test_visits_of_pas", tuple(values)),
            queries.visit_select,
            Visit.pa_id,
            ids,
            request,
            queries.VISIT_SORT,
            narrow=lambda stmt: queries.visit_filters(
                stmt, starts_from=starts_from, starts_before=None, statuses=None
            ),
            values=values,
        )

    visits_of_pas(viewer, [1], PageRequest(5), start)
    later = visits_of_pas(
        Viewer(role=Role.COORDINATOR, member_id=6),
        [2, 3],
        PageRequest(10),
        start + dt.timedelta(days=1),
    )
    got = params(later)
    assert (got["viewer_member_id"], got["ids"], got["page_limit"]) == (6, [2, 3], 11)
    assert got["starts_from"] == start + dt.timedelta(days=1)
    after = queries.paged_by_parent(
        viewer,
        "test_cluster_service_users",
        queries.member_select,
        ClusterServiceUser.cluster_id,
        [4],
        PageRequest(3, after=(17,)),
        (Member.id,),
        link=ClusterServiceUser.service_user_id,
    )
    assert (params(after)["page_after_0"], params(after)["page_limit"]) == (17, 4)


def test_a_viewer_set_is_one_cte_however_often_probed() -> None:
    """The coordinator's people are probed by every member and visit of a statement:
    rendered (and planned) once, as a CTE at the top, with the call's values."""
    queries.members_by_id(Viewer(role=Role.COORDINATOR, member_id=7), [1])
    stmt = queries.members_by_id(Viewer(role=Role.COORDINATOR, member_id=8), [1])
    sql = str(stmt.compile(dialect=postgresql.dialect()))
    assert sql.startswith("WITH viewer_clusters AS MATERIALIZED")
    assert sql.count("FROM cluster_service_user") == 1
    assert sql.count("FROM viewer_service_users") > 1
    assert params(stmt)["viewer_member_id"] == 8
