"""Telling partners we opened a cluster in their area, and hearing that they did
(docs/federation.md, section 13).

Opening a cluster: it becomes ACTIVE (created ACTIVE, or moved there from PLANNED). When
its local authority is one a partner serves (the partner's manifest: its home local
authority or one of its `localAuthorities`), every ACTIVE partnership granting COVER gets
`peerClusterOpened` through the outbox, queued in the transaction that opens the cluster
(it is sent exactly when the opening commits). The notice holds public facts only: a
reference (a pseudonym of the cluster, per partner), the name, the local authority, one
postcode district and when it opened. The receiver stores it in `partner_cluster`
(upserted by reference: opening again updates it), answering a repeated idempotency key
with its first answer and changing nothing.
"""

from __future__ import annotations

import datetime as dt
import uuid
from dataclasses import dataclass
from typing import Any

from sqlalchemy import func, or_, select
from sqlalchemy.dialects.postgresql import insert
from sqlalchemy.ext.asyncio import AsyncSession

from care.enums import ClusterStatus, PartnerScope, PartnershipStatus
from care.errors import DomainError, DomainErrors, ErrorCode, forbidden
from care.geography import all_centroids, distance_km, postcode_district
from care.models import Cluster, PartnerCluster, Partnership
from care.viewer import Viewer
from federation.feed import pseudonym
from federation.idempotency import DuplicateDelivery, KeyReused, first_answer, remember
from federation.outbox import send_later

OPERATION = "peerClusterOpened"
NOTICE = (
    "mutation PeerClusterOpened($idempotencyKey: String!, $cluster: PeerClusterInput!) "
    "{ peerClusterOpened(idempotencyKey: $idempotencyKey, cluster: $cluster) "
    "{ stored errors { field message code } } }"
)
GSS_CODE_SHAPE = 9
MAX_REF = 100
MAX_NAME = 200
# What a second copy, applied meanwhile by another transaction, reports (resolved by the
# GraphQL layer into the first copy's answer).
APPLIED_MEANWHILE = "idempotencyKey"


async def cluster_status(session: AsyncSession, cluster_id: int) -> str | None:
    return await session.scalar(select(Cluster.status).where(Cluster.id == cluster_id))


def _district_of(cluster: Cluster) -> str | None:
    """One district to name the cluster's place: its first listed district, else the one
    whose centroid is nearest its centre; none for a need-based cluster without either."""
    if cluster.postcode_districts:
        return sorted(cluster.postcode_districts)[0]
    if cluster.centre_latitude is None or cluster.centre_longitude is None:
        return None
    centre = (cluster.centre_latitude, cluster.centre_longitude)
    table = all_centroids()
    return min(table, key=lambda d: distance_km(table[d], centre))


async def announce_if_opened(session: AsyncSession, cluster_id: int) -> int:
    """Queue the notice to every partner holding COVER that serves the cluster's local
    authority, if the cluster is ACTIVE; in the caller's transaction. Returns how many
    notices were queued."""
    cluster = await session.get(Cluster, cluster_id)
    if cluster is None or cluster.status != ClusterStatus.ACTIVE.value:
        return 0
    la = cluster.la_code
    partners = (
        await session.execute(
            select(Partnership.id, Partnership.pseudonym_key).where(
                Partnership.status == PartnershipStatus.ACTIVE.value,
                Partnership.granted_scopes.contains([PartnerScope.COVER.value]),
                or_(
                    Partnership.home_la_code == la,
                    Partnership.local_authorities.contains([{"gssCode": la}]),
                ),
            )
        )
    ).all()
    opened_at = await session.scalar(select(func.now()))
    assert isinstance(opened_at, dt.datetime)
    district = _district_of(cluster)
    for partner in partners:
        await send_later(
            session,
            partner.id,
            OPERATION,
            NOTICE,
            {
                "cluster": {
                    "ref": pseudonym(partner.pseudonym_key, "cluster", cluster.id),
                    "name": cluster.name,
                    "localAuthority": la,
                    "district": district,
                    "openedAt": opened_at.isoformat(),
                }
            },
        )
    return len(partners)


@dataclass(frozen=True)
class ClusterNotice:
    ref: str
    name: str
    la_code: str
    district: str | None
    opened_at: dt.datetime


def _checked(notice: ClusterNotice) -> ClusterNotice:
    errors: list[DomainError] = []
    if not notice.ref.strip() or len(notice.ref) > MAX_REF:
        errors.append(DomainError(ErrorCode.INVALID, f"1 to {MAX_REF} characters.", "ref"))
    name = notice.name.strip()
    if not name or len(name) > MAX_NAME:
        errors.append(DomainError(ErrorCode.INVALID, f"1 to {MAX_NAME} characters.", "name"))
    la = notice.la_code.strip().upper()
    if len(la) != GSS_CODE_SHAPE or not la[0].isalpha() or not la[1:].isdigit():
        errors.append(
            DomainError(ErrorCode.INVALID, "A GSS code such as E09000014.", "localAuthority")
        )
    district = None
    if notice.district is not None:
        district = postcode_district(notice.district)
        if district is None:
            errors.append(DomainError(ErrorCode.INVALID, "A postcode district.", "district"))
    if notice.opened_at.tzinfo is None:
        errors.append(DomainError(ErrorCode.INVALID, "A time with its UTC offset.", "openedAt"))
    if errors:
        raise DomainErrors(errors)
    return ClusterNotice(notice.ref, name, la, district, notice.opened_at)


async def receive_cluster_opened(
    session: AsyncSession, viewer: Viewer, idempotency_key: str, notice: ClusterNotice
) -> dict[str, Any]:
    """`peerClusterOpened` (rule PARTNER_COVER): store the partner's cluster, once per
    idempotency key. Returns the answer (the first one for a repeated key)."""
    if viewer.partner is None or viewer.partnership_id is None:
        raise forbidden("Only a partner instance sends this.")
    try:
        key = uuid.UUID(idempotency_key)
    except (ValueError, AttributeError) as exc:
        raise DomainError(ErrorCode.INVALID, "A UUID.", "idempotencyKey") from exc
    try:
        seen = await first_answer(session, viewer.partner, key, OPERATION)
    except KeyReused as exc:
        raise DomainError(ErrorCode.INVALID, str(exc), "idempotencyKey") from exc
    if seen is not None:
        return seen
    clean = _checked(notice)
    values = {
        "name": clean.name,
        "la_code": clean.la_code,
        "district": clean.district,
        "opened_at": clean.opened_at,
        "received_at": func.now(),
    }
    await session.execute(
        insert(PartnerCluster)
        .values(partnership_id=viewer.partnership_id, ref=clean.ref, **values)
        .on_conflict_do_update(constraint="uq_partner_cluster_partnership_ref", set_=values)
    )
    answer: dict[str, Any] = {"stored": True}
    try:
        await remember(session, viewer.partner, key, OPERATION, answer)
    except DuplicateDelivery as exc:
        raise DomainError(
            ErrorCode.CONFLICT, "This message was applied meanwhile.", APPLIED_MEANWHILE
        ) from exc
    return answer


async def answer_of(session: AsyncSession, viewer: Viewer, idempotency_key: str) -> dict[str, Any]:
    """The first answer to a key (after a concurrent copy was applied)."""
    assert viewer.partner is not None
    seen = await first_answer(session, viewer.partner, uuid.UUID(idempotency_key), OPERATION)
    return seen or {"stored": True}
