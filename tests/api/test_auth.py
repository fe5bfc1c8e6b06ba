"""Authentication: missing, malformed, forged and expired tokens."""

from __future__ import annotations

import datetime as dt

from api.auth import TokenService, generate_key_pair
from care.enums import Role
from tests.conftest import Api

CLUSTERS = "{ clusters { totalCount } }"


async def test_anonymous_sees_only_public_profile(api: Api, db) -> None:  # type: ignore[no-untyped-def]
    from tests.factories import Build

    b = Build(db)
    await b.las()
    await b.coop()
    await b.cluster()
    await db.commit()
    body = await api.query("{ coop { name kind homeLocalAuthority { gssCode } } }")
    assert body["data"]["coop"] == {
        "name": "Test Care Co-op",
        "kind": "MULTI_STAKEHOLDER",
        "homeLocalAuthority": {"gssCode": "E09000003"},
    }
    body = await api.query(CLUSTERS)
    assert body["data"] is None
    assert body["errors"][0]["extensions"]["code"] == "UNAUTHENTICATED"


async def test_malformed_header_is_rejected(api: Api) -> None:
    r = await api.post(CLUSTERS, headers={"Authorization": "Token abc"})
    assert r.status_code == 401
    assert r.json()["errors"][0]["extensions"]["code"] == "UNAUTHENTICATED"


async def test_token_from_another_key_is_rejected(api: Api) -> None:
    forger = TokenService(generate_key_pair(), "coopnet", "coopnet", 3600)
    r = await api.post(CLUSTERS, token=forger.issue(Role.ADMIN))
    assert r.status_code == 401
    assert "not valid" in r.json()["errors"][0]["message"]


async def test_expired_token_is_rejected(api: Api) -> None:
    token = api.tokens.issue(Role.ADMIN, ttl=dt.timedelta(seconds=-5))
    r = await api.post(CLUSTERS, token=token)
    assert r.status_code == 401
    assert "expired" in r.json()["errors"][0]["message"]


async def test_token_for_another_audience_is_rejected(api: Api) -> None:
    other = TokenService(api.tokens.keys, "coopnet", "someone-else", 3600)
    r = await api.post(CLUSTERS, token=other.issue(Role.ADMIN))
    assert r.status_code == 401


async def test_la_analyst_is_forbidden_from_coop_records(api: Api) -> None:
    token = api.tokens.issue(Role.LA_ANALYST, la_code="E09000003")
    body = await api.query(CLUSTERS, token=token)
    assert body["errors"][0]["extensions"]["code"] == "FORBIDDEN"


async def test_admin_token_is_accepted(api: Api) -> None:
    data = await api.data(CLUSTERS, token=api.tokens.issue(Role.ADMIN))
    assert data["clusters"]["totalCount"] == 0
