"""Arrange data directly in the database for tests (small, explicit builders)."""

from __future__ import annotations

import asyncio
import base64
import datetime as dt
import uuid
from decimal import Decimal
from typing import Any

from sqlalchemy import text
from sqlalchemy.dialects.postgresql import Range
from sqlalchemy.ext.asyncio import AsyncEngine, AsyncSession

from care.models import (
    AvailabilityWindow,
    CarerLink,
    Cluster,
    ClusterPa,
    ClusterServiceUser,
    Coop,
    LocalAuthority,
    LocalAuthorityNeighbour,
    Member,
    PaProfile,
    Partnership,
    PaSkill,
    Pool,
    PoolCluster,
    PoolPa,
    RegularPa,
    ServiceUserProfile,
    Visit,
)

BARNET = "E09000003"
ENFIELD = "E09000010"
UTC = dt.UTC


def gid(type_name: str, pk: int) -> str:
    return base64.b64encode(f"{type_name}:{pk}".encode()).decode()


def at(days: float = 0, hours: float = 0) -> dt.datetime:
    """A time relative to now, rounded to the minute."""
    now = dt.datetime.now(UTC).replace(second=0, microsecond=0)
    return now + dt.timedelta(days=days, hours=hours)


class Build:
    def __init__(self, session: AsyncSession) -> None:
        self.s = session

    async def _add(self, obj: Any) -> Any:
        self.s.add(obj)
        await self.s.flush()
        return obj

    async def partnership(self, base_url: str, scopes: list[str], **extra: Any) -> Partnership:
        """An ACTIVE partnership we proposed to another instance, granting `scopes`;
        `extra` sets other columns or overrides these (another status, direction)."""
        defaults: dict[str, Any] = {
            "graphql_endpoint": f"{base_url}/graphql",
            "proposal_ref": uuid.uuid4(),
            "direction": "OUTGOING",
            "status": "ACTIVE",
            "requested_scopes": scopes,
            "granted_scopes": scopes,
            "protocol_version": "coopnet-federation/1",
        }
        return await self._add(Partnership(base_url=base_url, **(defaults | extra)))

    async def las(self) -> None:
        self.s.add_all(
            [
                LocalAuthority(gss_code=BARNET, name="Barnet"),
                LocalAuthority(gss_code=ENFIELD, name="Enfield"),
            ]
        )
        await self.s.flush()
        await self._add(LocalAuthorityNeighbour(la_a=BARNET, la_b=ENFIELD))

    async def coop(self) -> Coop:
        return await self._add(
            Coop(
                id=1,
                name="Test Care Co-op",
                kind="MULTI_STAKEHOLDER",
                cqc_status="REGISTERED",
                home_la_code=BARNET,
                society_number="RS001",
                cqc_provider_id="1-000000001",
            )
        )

    async def worker(self, name: str = "Sam Support") -> Member:
        return await self._add(
            Member(name=name, membership_class="WORKER", email="staff@example.org")
        )

    async def service_user(
        self,
        name: str = "Ada User",
        *,
        needs: list[str] | None = None,
        cluster: Cluster | None = None,
        **kw: Any,
    ) -> Member:
        m = await self._add(
            Member(
                name=name,
                membership_class="SERVICE_USER",
                email=kw.get("email", "ada@example.org"),
                phone="07700 900001",
                postcode="N12 0AA",
                latitude=51.615,
                longitude=-0.176,
            )
        )
        await self._add(
            ServiceUserProfile(
                member_id=m.id,
                funding="DIRECT_PAYMENT",
                needs=needs or ["personal-care"],
                planned_weekly_hours=Decimal("10"),
            )
        )
        if cluster is not None:
            await self._add(ClusterServiceUser(cluster_id=cluster.id, service_user_id=m.id))
        return m

    async def pa(
        self,
        name: str = "Pat Assistant",
        *,
        cluster: Cluster | None = None,
        skills: list[str] | None = None,
    ) -> Member:
        m = await self._add(
            Member(
                name=name,
                membership_class="WORKER",
                email="pat@example.org",
                phone="07700 900002",
                postcode="N20 9AA",
                latitude=51.63,
                longitude=-0.17,
            )
        )
        await self._add(
            PaProfile(
                member_id=m.id,
                dbs_checked_on=dt.date.today(),
                contracted_weekly_hours=Decimal("30"),
                hourly_pay_pence=1345,
                max_travel_km=Decimal("10"),
            )
        )
        for skill in skills or []:
            await self._add(PaSkill(pa_id=m.id, skill=skill))
        if cluster is not None:
            await self._add(ClusterPa(cluster_id=cluster.id, pa_id=m.id))
        return m

    async def carer(self, of: Member, name: str = "Cara Carer") -> Member:
        m = await self._add(
            Member(
                name=name,
                membership_class="CARER",
                email="cara@example.org",
                phone="07700 900003",
                postcode="N12 0AB",
            )
        )
        await self._add(CarerLink(carer_id=m.id, service_user_id=of.id, relationship="daughter"))
        return m

    async def cluster(
        self, name: str = "Finchley", *, support_worker: Member | None = None, la: str = BARNET
    ) -> Cluster:
        return await self._add(
            Cluster(
                name=name,
                kind="GEOGRAPHIC",
                la_code=la,
                status="ACTIVE",
                centre_latitude=51.61,
                centre_longitude=-0.18,
                radius_km=Decimal("3"),
                postcode_districts=["N12"],
                need_tags=[],
                support_worker_id=support_worker.id if support_worker else None,
            )
        )

    async def pool(
        self,
        name: str = "Pool",
        *,
        pas: list[Member] = (),  # type: ignore[assignment]
        clusters: list[Cluster] = (),
    ) -> Pool:  # type: ignore[assignment]
        p = await self._add(Pool(name=name))
        for pa in pas:
            await self._add(PoolPa(pool_id=p.id, pa_id=pa.id))
        for c in clusters:
            await self._add(PoolCluster(pool_id=p.id, cluster_id=c.id))
        return p

    async def regular(self, su: Member, pa: Member) -> None:
        await self._add(RegularPa(service_user_id=su.id, pa_id=pa.id))

    async def visit(
        self,
        su: Member,
        pa: Member | None,
        start: dt.datetime,
        minutes: int = 60,
        status: str = "SCHEDULED",
        tasks: list[str] | None = None,
    ) -> Visit:
        return await self._add(
            Visit(
                service_user_id=su.id,
                pa_id=pa.id if pa else None,
                during=Range(start, start + dt.timedelta(minutes=minutes), bounds="[)"),
                status=status,
                tasks=tasks if tasks is not None else ["breakfast"],
            )
        )

    async def window(self, pa: Member, start: dt.datetime, hours: float = 4) -> AvailabilityWindow:
        return await self._add(
            AvailabilityWindow(
                pa_id=pa.id, during=Range(start, start + dt.timedelta(hours=hours), bounds="[)")
            )
        )


# Issue 12's two rules at once: a visit's open cover requests number 1 if it needs cover,
# else 0 (migration 0017). The visits breaking them, as (id, status, open requests).
COVER_RULE_BROKEN = text(
    """
    SELECT v.id, v.status, count(r.id) AS open_requests
    FROM visit v LEFT JOIN cover_request r ON r.visit_id = v.id AND r.status = 'OPEN'
    GROUP BY v.id
    HAVING count(r.id) <> CASE WHEN v.status = 'NEEDS_COVER' THEN 1 ELSE 0 END
    ORDER BY v.id
    """
)


async def cover_rule_broken(session: AsyncSession) -> list[tuple[int, str, int]]:
    return [(r.id, r.status, r.open_requests) for r in await session.execute(COVER_RULE_BROKEN)]


async def wait_for_lock_wait(engine: AsyncEngine) -> None:
    """Until some backend of the test database waits for a lock: the request under test
    has reached the row another (uncommitted) transaction holds."""
    for _ in range(250):
        async with engine.connect() as conn:
            waiting = await conn.scalar(
                text(
                    "SELECT count(*) FROM pg_stat_activity"
                    " WHERE datname = current_database() AND wait_event_type = 'Lock'"
                )
            )
        if waiting:
            return
        await asyncio.sleep(0.02)
    raise AssertionError("the request never waited for the other transaction")
