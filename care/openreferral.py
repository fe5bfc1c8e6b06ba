"""The co-op's services as an Open Referral UK directory lists them (docs/market.md,
"Open Referral UK").

One service per ACTIVE cluster: where it works (its local authority and postcode
districts), what it offers (its need tags, or personal assistance), and how to ask (the
co-op's public contact). Nothing personal: no member, not even the support worker, appears.

Service and organisation ids are UUIDs the directory can keep: a service's id carries the
cluster id in its last eight bytes after a prefix derived from the instance's base URL
(UUID version 8, RFC 9562), so it is stable, different on every instance, and read back
without a lookup table.
"""

from __future__ import annotations

import hashlib
import uuid
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from sqlalchemy import Row, func, select
from sqlalchemy.ext.asyncio import AsyncSession

from care.enums import ClusterStatus
from care.models import Cluster, Coop, LocalAuthority


def _v8(prefix: bytes, number: int) -> uuid.UUID:
    raw = bytearray(prefix[:8] + number.to_bytes(8, "big"))
    raw[6] = (raw[6] & 0x0F) | 0x80  # version 8
    raw[8] = (raw[8] & 0x3F) | 0x80  # RFC 9562 variant
    return uuid.UUID(bytes=bytes(raw))


def _prefix(base_url: str, kind: str) -> bytes:
    return hashlib.sha256(f"{base_url}|{kind}".encode()).digest()


def service_id(base_url: str, cluster_id: int) -> uuid.UUID:
    return _v8(_prefix(base_url, "service"), cluster_id)


def organization_id(base_url: str) -> uuid.UUID:
    return _v8(_prefix(base_url, "organization"), 1)


def cluster_of(base_url: str, value: str) -> int | None:
    """The cluster id a service id names, or None for an id that is not one of ours."""
    try:
        parsed = uuid.UUID(value)
    except ValueError:
        return None
    number = int.from_bytes(parsed.bytes[8:], "big") & ((1 << 62) - 1)
    return number if service_id(base_url, number) == parsed else None


@dataclass(frozen=True)
class Contact:
    email: str | None
    phone: str | None
    website: str | None


def _clusters() -> Any:
    return (
        select(
            Cluster.id,
            Cluster.name,
            Cluster.kind,
            Cluster.la_code,
            LocalAuthority.name.label("la_name"),
            Cluster.postcode_districts,
            Cluster.need_tags,
            Cluster.created_at,
        )
        .join(LocalAuthority, LocalAuthority.gss_code == Cluster.la_code)
        .where(Cluster.status == ClusterStatus.ACTIVE.value)
    )


async def coop(session: AsyncSession) -> Any:
    """The co-op's name and description (None before the co-op is set up)."""
    return (await session.execute(select(Coop.name, Coop.description))).first()


async def page(session: AsyncSession, offset: int, limit: int) -> tuple[int, Sequence[Row[Any]]]:
    total = await session.scalar(
        select(func.count())
        .select_from(Cluster)
        .where(Cluster.status == ClusterStatus.ACTIVE.value)
    )
    rows = (
        await session.execute(_clusters().order_by(Cluster.id).offset(offset).limit(limit))
    ).all()
    return int(total or 0), rows


async def one(session: AsyncSession, cluster_id: int) -> Row[Any] | None:
    return (await session.execute(_clusters().where(Cluster.id == cluster_id))).first()


def _offers(row: Row[Any]) -> str:
    tags = ", ".join(row.need_tags or [])
    return f"Personal assistance at home{' (' + tags + ')' if tags else ''}"


def service(
    row: Row[Any], owner: Row[Any], base_url: str, contact: Contact, *, full: bool
) -> dict[str, Any]:
    """A service in the HSDS UK 3.0 shape: the list's one-to-one fields, and with `full`
    its areas, contacts and languages too."""
    sid = str(service_id(base_url, row.id))
    districts = ", ".join(row.postcode_districts or [])
    where = f"{row.la_name}{' (' + districts + ')' if districts else ''}"
    ask = (
        f"To ask for care, contact {owner.name}"
        + (f" by email at {contact.email}" if contact.email else "")
        + (f" or by phone on {contact.phone}" if contact.phone else "")
        + "."
    )
    out: dict[str, Any] = {
        "id": sid,
        "organization_id": str(organization_id(base_url)),
        "name": f"{owner.name}: {row.name}",
        "description": (
            f"{_offers(row)} from a team of personal assistants and a support worker "
            f"in {where}, run by {owner.name}, a care co-operative. {ask}"
        ),
        "url": f"{base_url}/openreferral/services/{sid}",
        "email": contact.email,
        "status": "active",
        "last_modified": row.created_at.isoformat(),
        "organization": {
            "id": str(organization_id(base_url)),
            "name": owner.name,
            "description": owner.description or f"{owner.name}, a care co-operative.",
            "email": contact.email,
            "website": contact.website or base_url,
        },
    }
    if full:
        out["service_areas"] = [
            {
                "id": str(uuid.uuid5(uuid.UUID(sid), f"area:{row.la_code}")),
                "service_id": sid,
                "name": row.la_name,
                "description": f"{where}; local authority GSS code {row.la_code}.",
                "extent_type": "postcode" if districts else None,
                "extent": districts or None,
                "uri": f"http://statistics.data.gov.uk/id/statistical-geography/{row.la_code}",
            }
        ]
        out["contacts"] = (
            [
                {
                    "id": str(uuid.uuid5(uuid.UUID(sid), "contact")),
                    "service_id": sid,
                    "name": owner.name,
                    "email": contact.email,
                    "phones": (
                        [{"id": str(uuid.uuid5(uuid.UUID(sid), "phone")), "number": contact.phone}]
                        if contact.phone
                        else []
                    ),
                }
            ]
            if contact.email or contact.phone
            else []
        )
        out["languages"] = [
            {
                "id": str(uuid.uuid5(uuid.UUID(sid), "en")),
                "service_id": sid,
                "name": "English",
                "code": "en",
            }
        ]
    return out
