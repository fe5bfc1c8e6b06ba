"""Authentication: missing, malformed, forged and expired tokens."""

from __future__ import annotations

import datetime as dt
import uuid

import httpx
import pytest
from sqlalchemy import update
from sqlalchemy.ext.asyncio import AsyncSession

from api.app import create_app
from api.auth import TokenService, generate_key_pair
from api.settings import Settings
from care.enums import Role
from care.models import Member
from care.tokens import revoke_member_tokens, revoke_token
from tests.api import forge
from tests.conftest import Api, StatementCounter
from tests.factories import Build, gid

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


# --- strict claims ---------------------------------------------------------------------------


def signed(api: Api, **overrides: object) -> str:
    return forge.signed(api.tokens.keys, **overrides)


async def test_expired_token_is_rejected(api: Api) -> None:
    now = int(dt.datetime.now(dt.UTC).timestamp())
    token = signed(api, role="ADMIN", sub="role:ADMIN", member=None, iat=now - 60, exp=now - 5)
    r = await api.post(CLUSTERS, token=token)
    assert r.status_code == 401
    assert "expired" in r.json()["errors"][0]["message"]


NOW = int(dt.datetime.now(dt.UTC).timestamp())


@pytest.mark.parametrize(
    "claims",
    [
        {"member": True, "sub": "True"},
        {"member": True, "sub": "1"},
        {"member": 0, "sub": "0"},
        {"member": -3, "sub": "-3"},
        {"member": 2**63, "sub": str(2**63)},
        {"member": "1"},
        {"member": 1.0},
        {"member": None, "sub": "role:PA"},
        {"sub": "2"},
        {"sub": 1},
        {"sub": None},
        {"la": "E09000003"},
        {"role": "LA_ANALYST", "la": "E09000003"},  # an analyst names no member
        {"role": "LA_ANALYST", "member": None, "sub": "role:LA_ANALYST", "la": 9000003},
        {"role": "LA_ANALYST", "member": None, "sub": "role:LA_ANALYST", "la": "Barnet"},
        {"role": "LA_ANALYST", "member": None, "sub": "role:LA_ANALYST"},
        {"role": "LA_ANALYST", "member": None, "sub": "role:LA_ANALYST", "la": "E09000003\n"},
        {"exp": 10**20},
        {"exp": float("inf")},
        {"role": "ROOT"},
        {"role": True},
        {"role": ["PA"]},
        {"jti": None},
        {"jti": 7},
        {"jti": "not-a-uuid"},
        {"jti": str(uuid.uuid4()).upper()},
        {"iat": True},
        {"exp": NOW + 3600, "iat": NOW - 31 * 24 * 3600},  # lives longer than allowed
        {"aud": ["coopnet"]},
        {"admin": True},  # a claim this service does not know
    ],
)
async def test_claims_of_the_wrong_type_or_meaning_are_refused(
    api: Api, db: AsyncSession, claims: dict[str, object]
) -> None:
    b = Build(db)
    await b.las()
    pa = await b.pa()
    await db.commit()
    assert pa.id == 1  # the default claims name member 1
    r = await api.post(ME, token=signed(api, **claims))
    assert r.status_code == 401, r.text
    assert r.json()["errors"][0]["extensions"]["code"] == "UNAUTHENTICATED"
    # The same token with the default claims is fine (the test varies one thing).
    assert (await api.post(ME, token=signed(api))).status_code == 200


ME = "{ me { name } visits(first: 5) { totalCount edges { node { id startsAt } } } }"


async def test_member_true_does_not_poison_later_pa_requests(
    settings: Settings, db: AsyncSession, app: object
) -> None:
    """`member: true` passed `isinstance(True, int)`; as a fresh process's first PA request
    it broke every later PA request. A fresh app, so that it is the first."""
    b = Build(db)
    await b.las()
    cluster = await b.cluster()
    pa = await b.pa(cluster=cluster)
    su = await b.service_user(cluster=cluster)
    await b.visit(su, pa, dt.datetime.now(dt.UTC) + dt.timedelta(days=1))
    await db.commit()
    assert settings.database_url is not None
    fresh = create_app(settings, settings.database_url)
    async with fresh.router.lifespan_context(fresh):
        transport = httpx.ASGITransport(app=fresh)
        async with httpx.AsyncClient(transport=transport, base_url="http://test") as client:
            api = Api(client, fresh)
            bad = await api.post(ME, token=signed(api, member=True, sub="True"))
            assert bad.status_code == 401
            for _ in range(2):
                data = await api.data(ME, token=api.token(Role.PA, pa.id))
                assert data["me"]["name"] == "Pat Assistant"
                assert data["visits"]["totalCount"] == 1


# --- revocation -----------------------------------------------------------------------------


async def test_deactivated_member_is_refused_and_reactivation_revives_no_token(
    api: Api, db: AsyncSession
) -> None:
    b = Build(db)
    await b.las()
    pa = await b.pa()
    await db.commit()
    old = api.token(Role.PA, pa.id)
    assert (await api.post(ME, token=old)).status_code == 200
    await db.execute(update(Member).where(Member.id == pa.id).values(active=False))
    await db.commit()
    r = await api.post(ME, token=old)
    assert r.status_code == 401
    assert "revoked" in r.json()["errors"][0]["message"]
    await db.execute(update(Member).where(Member.id == pa.id).values(active=True))
    await db.commit()
    assert (await api.post(ME, token=old)).status_code == 401
    assert (await api.post(ME, token=api.token(Role.PA, pa.id))).status_code == 200


async def test_update_member_inactive_cuts_the_members_tokens(api: Api, db: AsyncSession) -> None:
    b = Build(db)
    await b.las()
    pa = await b.pa()
    await db.commit()
    pa_token = api.token(Role.PA, pa.id)
    data = await api.data(
        """mutation($id: ID!) { updateMember(id: $id, input: {active: false}) {
            errors { code } } }""",
        {"id": gid("PersonalAssistant", pa.id)},
        as_=(Role.ADMIN, None),
    )
    assert data["updateMember"]["errors"] == []
    assert (await api.post(ME, token=pa_token)).status_code == 401


async def test_a_revoked_token_and_a_members_tokens_are_refused(api: Api, db: AsyncSession) -> None:
    b = Build(db)
    await b.las()
    pa = await b.pa()
    await db.commit()
    first = api.tokens.mint(Role.PA, pa.id)
    second = api.tokens.mint(Role.PA, pa.id)
    admin = api.tokens.mint(Role.ADMIN)
    assert await revoke_token(db, first.ref.jti, first.ref.expires_at, pa.id)
    assert await revoke_token(db, admin.ref.jti, admin.ref.expires_at)
    await db.commit()
    assert (await api.post(ME, token=first.token)).status_code == 401
    assert (await api.post(CLUSTERS, token=admin.token)).status_code == 401
    assert (await api.post(ME, token=second.token)).status_code == 200
    assert (await api.post(CLUSTERS, token=api.token(Role.ADMIN))).status_code == 200

    assert await revoke_member_tokens(db, pa.id)
    await db.commit()
    assert (await api.post(ME, token=second.token)).status_code == 401
    assert (await api.post(ME, token=api.token(Role.PA, pa.id))).status_code == 200


async def test_a_deleted_member_is_refused(api: Api, db: AsyncSession) -> None:
    await Build(db).las()
    await db.commit()
    r = await api.post(ME, token=api.token(Role.COORDINATOR, 4242))
    assert r.status_code == 401


async def test_the_check_is_one_statement_per_request(
    api: Api, db: AsyncSession, sql_counter: StatementCounter
) -> None:
    b = Build(db)
    await b.las()
    pa = await b.pa()
    await db.commit()
    token = api.token(Role.PA, pa.id)
    await api.data("{ me { name } visits(first: 3) { totalCount } }", token=token)
    assert sql_counter.token_checks == 1
    await api.data("{ coop { name } }")
    assert sql_counter.token_checks == 1  # anonymous: nothing to check


REVOKE_MEMBER = """mutation($id: ID!) { revokeMemberTokens(memberId: $id) {
    revoked errors { field code } } }"""
REVOKE_TOKEN = """mutation($jti: String!) { revokeToken(jti: $jti) {
    revoked errors { field code } } }"""


async def test_admins_revoke_tokens_over_graphql(api: Api, db: AsyncSession) -> None:
    b = Build(db)
    await b.las()
    cluster = await b.cluster()
    coordinator = await b.worker("Cora Ordinator")
    pa = await b.pa(cluster=cluster)
    await db.commit()
    pa_token = api.token(Role.PA, pa.id)
    other_admin = api.tokens.mint(Role.ADMIN)
    admin = api.token(Role.ADMIN)
    pa_id = {"id": gid("PersonalAssistant", pa.id)}

    # Only admins; anonymous callers are told to authenticate.
    anonymous = await api.query(REVOKE_MEMBER, pa_id)
    assert anonymous["errors"][0]["extensions"]["code"] == "UNAUTHENTICATED"
    for caller in (api.token(Role.COORDINATOR, coordinator.id), pa_token):
        assert await api.refused(REVOKE_MEMBER, pa_id, token=caller) == "FORBIDDEN"
    assert (await api.post(ME, token=pa_token)).status_code == 200

    data = await api.data(REVOKE_MEMBER, pa_id, token=admin)
    assert data["revokeMemberTokens"] == {"revoked": True, "errors": []}
    assert (await api.post(ME, token=pa_token)).status_code == 401
    missing = await api.data(REVOKE_MEMBER, {"id": gid("PersonalAssistant", 999)}, token=admin)
    assert missing["revokeMemberTokens"]["errors"] == [{"field": "memberId", "code": "NOT_FOUND"}]

    jti = {"jti": str(other_admin.ref.jti)}
    data = await api.data(REVOKE_TOKEN, jti, token=admin)
    assert data["revokeToken"] == {"revoked": True, "errors": []}
    assert (await api.post(CLUSTERS, token=other_admin.token)).status_code == 401
    again = await api.data(REVOKE_TOKEN, jti, token=admin)
    assert again["revokeToken"] == {"revoked": False, "errors": []}
    bad = await api.data(REVOKE_TOKEN, {"jti": "nope"}, token=admin)
    assert bad["revokeToken"]["errors"] == [{"field": "jti", "code": "INVALID"}]
