"""The manifest at `GET /.well-known/coopnet`: who this instance is, where it serves,
the keys its signatures verify with, and how to talk to it (docs/federation.md).

Public by design: the co-op's public profile (what the `coop` query shows anyone), the
local authorities of its clusters, public keys and endpoints. Nothing about a member.
"""

from __future__ import annotations

from typing import Any

from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession

from care.enums import ClusterStatus
from care.models import Cluster, Coop, LocalAuthority
from federation.identity import Identity

PROTOCOL_VERSIONS = ("coopnet-federation/1",)
# Partners re-read the manifest on an unknown key; a short cache keeps a rotation's new
# key visible within minutes while sparing the database a read per request.
CACHE_SECONDS = 300


async def build_manifest(
    session: AsyncSession, identity: Identity, base_url: str
) -> dict[str, Any]:
    coop = (
        await session.execute(
            select(
                Coop.name,
                Coop.kind,
                Coop.society_number,
                Coop.cqc_provider_id,
                Coop.cqc_status,
                Coop.description,
                Coop.home_la_code,
            )
        )
    ).first()
    # The local authorities served: those of the co-op's clusters not closed.
    las = (
        await session.execute(
            select(LocalAuthority.gss_code, LocalAuthority.name)
            .where(
                LocalAuthority.gss_code.in_(
                    select(Cluster.la_code).where(Cluster.status != ClusterStatus.CLOSED.value)
                )
            )
            .order_by(LocalAuthority.gss_code)
        )
    ).all()
    profile: dict[str, Any] | None = None
    if coop is not None:
        profile = {
            "name": coop.name,
            "kind": coop.kind,
            "societyNumber": coop.society_number,
            "cqcProviderId": coop.cqc_provider_id,
            "cqcStatus": coop.cqc_status,
            "description": coop.description,
            "homeLocalAuthority": coop.home_la_code,
        }
    return {
        "protocolVersions": list(PROTOCOL_VERSIONS),
        "baseUrl": base_url,
        "graphqlEndpoint": f"{base_url}/graphql",
        "coop": profile,
        "localAuthorities": [{"gssCode": r.gss_code, "name": r.name} for r in las],
        "keys": identity.jwks(),
    }
