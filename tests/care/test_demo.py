"""The demo co-op: loads once, deterministically, within every database rule."""

from __future__ import annotations

import datetime as dt
from typing import Any

from sqlalchemy import func, select, text
from sqlalchemy.ext.asyncio import AsyncSession

from care.demo import LONDON, load_demo
from care.enums import Role
from care.models import Cluster, Member, PaProfile, Pool, ServiceUserProfile, Visit
from tests.conftest import Api
from tests.factories import cover_rule_broken


async def counts(db: AsyncSession) -> dict[str, Any]:
    async def n(model: Any) -> int:
        return int(await db.scalar(select(func.count()).select_from(model)) or 0)

    return {
        "clusters": await n(Cluster),
        "members": await n(Member),
        "service_users": await n(ServiceUserProfile),
        "pas": await n(PaProfile),
        "pools": await n(Pool),
        "visits": await n(Visit),
    }


async def test_demo_loads_once_and_is_deterministic(db: AsyncSession) -> None:
    # Today's date, not a fixed one: the demo records a sickness absence from today + 2
    # through the absence service, which (by the real clock) refuses one over visits
    # already started, as they would be once a fixed date is two days past.
    today = dt.datetime.now(LONDON).date()
    assert await load_demo(db, today) is True
    await db.commit()
    first = await counts(db)
    assert first["clusters"] == 4
    assert 28 <= first["service_users"] <= 36
    assert 22 <= first["pas"] <= 28
    assert first["pools"] == 2
    assert first["visits"] > 1000
    checksum = await db.scalar(
        text(
            "SELECT md5(string_agg(id || ':' || coalesce(pa_id, 0) || ':' || during::text, ','"
            " ORDER BY id)) FROM visit"
        )
    )

    assert await load_demo(db, today) is False
    await db.commit()
    assert await counts(db) == first

    # Same input, same data: wipe and load again.
    await db.execute(
        text("TRUNCATE coop, member, cluster, pool, local_authority RESTART IDENTITY CASCADE")
    )
    await db.commit()
    assert await load_demo(db, today) is True
    await db.commit()
    again = await db.scalar(
        text(
            "SELECT md5(string_agg(id || ':' || coalesce(pa_id, 0) || ':' || during::text, ','"
            " ORDER BY id)) FROM visit"
        )
    )
    assert again == checksum


async def test_demo_clusters_answer_the_readme_query(api: Api, db: AsyncSession) -> None:
    await load_demo(db)
    await db.commit()
    data = await api.data(
        "{ clusters(first: 10) { totalCount edges { node { name kind localAuthority { name } "
        "serviceUsers(first: 3) { edges { node { name needs } } } } } } }",
        token=api.token(Role.ADMIN),
    )
    assert data["clusters"]["totalCount"] == 4
    kinds = {e["node"]["kind"] for e in data["clusters"]["edges"]}
    assert kinds == {"GEOGRAPHIC", "NEED_BASED"}
    boroughs = {e["node"]["localAuthority"]["name"] for e in data["clusters"]["edges"]}
    assert boroughs == {"Barnet", "Enfield"}


async def test_demo_visits_needing_cover_have_open_requests(db: AsyncSession) -> None:
    await load_demo(db)
    await db.commit()
    orphans = await db.scalar(
        text(
            "SELECT count(*) FROM visit v WHERE v.status = 'NEEDS_COVER' AND NOT EXISTS ("
            " SELECT 1 FROM cover_request r WHERE r.visit_id = v.id AND r.status = 'OPEN')"
        )
    )
    assert orphans == 0
    assert await cover_rule_broken(db) == []  # and no open request on a visit that is covered
    unassigned = await db.scalar(
        text("SELECT count(*) FROM cover_request WHERE reason = 'UNASSIGNED' AND status = 'OPEN'")
    )
    assert unassigned > 0  # the rota's visits nobody could take, opened by the database
    from_absence = await db.scalar(
        text(
            "SELECT count(*) FROM cover_request r JOIN absence a ON a.id = r.absence_id "
            "WHERE a.kind = 'SICKNESS'"
        )
    )
    assert from_absence > 0
