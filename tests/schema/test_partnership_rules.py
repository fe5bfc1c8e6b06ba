"""The partnership rules at schema level (federation/partnerships.py): the messages a
partner instance sends, as a verified PARTNER caller built directly (the door is tried
for real in tests/federation/test_partnerships.py), and the refusals an admin meets
before any call to a partner is made."""

from __future__ import annotations

import asyncio
import base64
import datetime as dt
import uuid
from decimal import Decimal
from typing import Any

from sqlalchemy import delete, func, select
from sqlalchemy.dialects.postgresql import Range
from sqlalchemy.ext.asyncio import AsyncSession
from strawberry.types import ExecutionResult

from api.db import session_factory
from care.enums import Role
from care.models import Partnership, PartnerWindow
from care.viewer import Viewer
from federation.client import Manifest
from schema import create_schema
from schema.context import Context, Limits
from schema.subscriptions import LiveContext

PARTNER = "https://partner.example"
KEYS = [{"kty": "OKP", "crv": "Ed25519", "x": "AAAA", "kid": "k1"}]
MANIFEST = Manifest(
    base_url=PARTNER,
    graphql_endpoint=f"{PARTNER}/graphql",
    protocol_versions=("coopnet-federation/1",),
    coop={"name": "Partner Co-op", "homeLocalAuthority": "E09000003"},
    local_authorities=[{"gssCode": "E09000003", "name": "Barnet"}],
    keys=KEYS,
)
PEER = "status scopes errors { field code }"
PROPOSE = (
    "mutation($input: PeerProposePartnershipInput!) { peerProposePartnership(input: $input) "
    f"{{ {PEER} }} }}"
)
ANSWER = (
    "mutation($input: PeerAnswerPartnershipInput!) { peerAnswerPartnership(input: $input) "
    f"{{ {PEER} }} }}"
)
CHANGE = (
    "mutation($input: PeerChangePartnershipInput!) { peerChangePartnership(input: $input) "
    f"{{ {PEER} }} }}"
)
ADMIN_PAYLOAD = "{ partnership { status } errors { field code } }"


def gid(pk: int) -> str:
    return base64.b64encode(f"Partnership:{pk}".encode()).decode()


def partner(base_url: str = PARTNER) -> Viewer:
    return Viewer(partner=base_url)


async def run(
    app: Any,
    viewer: Viewer,
    query: str,
    variables: dict[str, Any],
    manifest: Manifest | None = MANIFEST,
) -> dict[str, Any]:
    async with session_factory(app.state.engine)() as session:
        result = await create_schema().execute(
            query,
            variable_values=variables,
            context_value=Context(
                session=session, viewer=viewer, limits=Limits(), peer_manifest=manifest
            ),
        )
    assert not result.errors, result.errors
    assert result.data is not None
    return result.data


async def peer(app: Any, query: str, field: str, **fields: Any) -> dict[str, Any]:
    payload: dict[str, Any] = (await run(app, partner(), query, {"input": fields}))[field]
    return payload


def codes(payload: dict[str, Any]) -> list[str]:
    return [e["code"] for e in payload["errors"]]


async def proposal(app: Any, ref: uuid.UUID, scopes: list[str] | None = None) -> dict[str, Any]:
    return await peer(
        app,
        PROPOSE,
        "peerProposePartnership",
        proposalRef=str(ref),
        baseUrl=PARTNER + "/",
        scopes=scopes or ["AVAILABILITY", "COVER"],
        protocolVersion="coopnet-federation/1",
    )


async def the_row(db: AsyncSession) -> Partnership:
    await db.rollback()  # see what the schema committed
    db.expire_all()
    row = await db.scalar(select(Partnership))
    assert row is not None
    return row


async def ours(db: AsyncSession, status: str, **values: Any) -> Partnership:
    """A partnership of ours with PARTNER (proposed by us unless told)."""
    row = Partnership(
        base_url=PARTNER,
        graphql_endpoint=f"{PARTNER}/graphql",
        proposal_ref=uuid.uuid4(),
        direction=values.pop("direction", "OUTGOING"),
        status=status,
        requested_scopes=values.pop("requested_scopes", ["AVAILABILITY", "COVER"]),
        granted_scopes=values.pop(
            "granted_scopes", ["AVAILABILITY"] if status in ("ACTIVE", "SUSPENDED") else []
        ),
        protocol_version="coopnet-federation/1",
        keys=KEYS,
        **values,
    )
    db.add(row)
    await db.commit()
    return row


async def test_a_proposal_is_recorded_for_admins(app: Any, db: AsyncSession) -> None:
    ref = uuid.uuid4()
    got = await proposal(app, ref)
    assert got == {"status": "PROPOSED", "scopes": [], "errors": []}
    row = await the_row(db)
    assert (row.base_url, row.direction, row.status) == (PARTNER, "INCOMING", "PROPOSED")
    assert row.proposal_ref == ref and row.requested_scopes == ["AVAILABILITY", "COVER"]
    assert (row.coop_name, row.home_la_code, row.keys) == ("Partner Co-op", "E09000003", KEYS)
    assert row.last_contact_at is not None
    # Sent again: harmless.
    assert (await proposal(app, ref))["status"] == "PROPOSED"
    assert await db.scalar(select(func.count()).select_from(Partnership)) == 1


async def test_a_proposal_must_come_from_its_own_base_url(app: Any, db: AsyncSession) -> None:
    variables = {
        "proposalRef": str(uuid.uuid4()),
        "baseUrl": "https://someone-else.example",
        "scopes": ["COVER"],
        "protocolVersion": "coopnet-federation/1",
    }
    got = await peer(app, PROPOSE, "peerProposePartnership", **variables)
    assert codes(got) == ["FORBIDDEN"] and got["status"] is None
    bad_ref = {**variables, "baseUrl": PARTNER, "proposalRef": "not-a-uuid"}
    assert codes(await peer(app, PROPOSE, "peerProposePartnership", **bad_ref)) == ["INVALID"]
    old = {**variables, "baseUrl": PARTNER, "protocolVersion": "coopnet-federation/0"}
    assert codes(await peer(app, PROPOSE, "peerProposePartnership", **old)) == ["VERSION_MISMATCH"]
    none = {**variables, "baseUrl": PARTNER, "scopes": []}
    assert codes(await peer(app, PROPOSE, "peerProposePartnership", **none)) == ["REQUIRED"]
    await db.rollback()
    assert await db.scalar(select(func.count()).select_from(Partnership)) == 0


async def test_answers_must_match_our_open_proposal(app: Any, db: AsyncSession) -> None:
    row = await ours(db, "PROPOSED", granted_scopes=[])
    ref = str(row.proposal_ref)
    unknown = await peer(
        app, ANSWER, "peerAnswerPartnership", proposalRef=str(uuid.uuid4()), accepted=True,
        scopes=["COVER"],
    )  # fmt: skip
    assert codes(unknown) == ["NOT_FOUND"]
    too_much = await peer(
        app, ANSWER, "peerAnswerPartnership", proposalRef=ref, accepted=True,
        scopes=["MARKET_DATA"],
    )  # fmt: skip
    assert codes(too_much) == ["INVALID"]
    nothing = await peer(
        app, ANSWER, "peerAnswerPartnership", proposalRef=ref, accepted=True, scopes=[]
    )
    assert codes(nothing) == ["INVALID"]
    # Another instance cannot answer for the partner.
    stranger = await run(
        app,
        partner("https://stranger.example"),
        ANSWER,
        {"input": {"proposalRef": ref, "accepted": False, "scopes": []}},
    )
    assert codes(stranger["peerAnswerPartnership"]) == ["NOT_FOUND"]
    assert (await the_row(db)).status == "PROPOSED"

    accepted = await peer(
        app, ANSWER, "peerAnswerPartnership", proposalRef=ref, accepted=True, scopes=["COVER"]
    )
    assert accepted == {"status": "ACTIVE", "scopes": ["COVER"], "errors": []}
    row = await the_row(db)
    assert (row.status, row.granted_scopes) == ("ACTIVE", ["COVER"])
    # The same answer again is harmless; a different one is refused.
    again = await peer(
        app, ANSWER, "peerAnswerPartnership", proposalRef=ref, accepted=True, scopes=["COVER"]
    )
    assert again["status"] == "ACTIVE"
    other = await peer(
        app, ANSWER, "peerAnswerPartnership", proposalRef=ref, accepted=False, scopes=[]
    )
    assert codes(other) == ["CLOSED"]


async def test_a_rejection_is_recorded(app: Any, db: AsyncSession) -> None:
    row = await ours(db, "PROPOSED", granted_scopes=[])
    got = await peer(
        app,
        ANSWER,
        "peerAnswerPartnership",
        proposalRef=str(row.proposal_ref),
        accepted=False,
        scopes=["COVER"],
    )
    assert got == {"status": "REJECTED", "scopes": [], "errors": []}
    assert (await the_row(db)).status == "REJECTED"


async def test_the_partner_suspends_and_only_it_resumes(app: Any, db: AsyncSession) -> None:
    row = await ours(db, "ACTIVE")
    ref = str(row.proposal_ref)

    async def change(status: str) -> dict[str, Any]:
        return await peer(app, CHANGE, "peerChangePartnership", proposalRef=ref, status=status)

    assert (await change("SUSPENDED"))["status"] == "SUSPENDED"
    row = await the_row(db)
    assert (row.status, row.suspended_by) == ("SUSPENDED", "PARTNER")
    assert (await change("ACTIVE"))["status"] == "ACTIVE"
    # Suspended by us: the partner's resumption is refused.
    row = await the_row(db)
    row.status, row.suspended_by = "SUSPENDED", "US"
    await db.commit()
    assert codes(await change("ACTIVE")) == ["FORBIDDEN"]
    assert (await change("SUSPENDED"))["status"] == "SUSPENDED"  # already: nothing changes
    assert (await the_row(db)).suspended_by == "US"
    assert codes(await change("PROPOSED")) == ["INVALID"]


async def add_windows(db: AsyncSession, partnership_id: int, count: int) -> None:
    start = dt.datetime(2030, 1, 7, 9, tzinfo=dt.UTC)
    db.add_all(
        PartnerWindow(
            partnership_id=partnership_id,
            ref=f"w{i}",
            period=0,
            pa_ref=f"pa{i}",
            skills=[],
            district="N3",
            travel_km=Decimal(5),
            during=Range(start + dt.timedelta(days=i), start + dt.timedelta(days=i, hours=2)),
        )
        for i in range(count)
    )
    await db.commit()


async def test_the_partner_ending_deletes_what_it_sent(app: Any, db: AsyncSession) -> None:
    row = await ours(db, "SUSPENDED", suspended_by="US", feed_cursor="c1")
    await add_windows(db, row.id, 3)
    got = await peer(
        app, CHANGE, "peerChangePartnership", proposalRef=str(row.proposal_ref), status="ENDED"
    )
    assert got == {"status": "ENDED", "scopes": [], "errors": []}
    row = await the_row(db)
    assert (row.status, row.suspended_by, row.feed_cursor) == ("ENDED", None, None)
    assert await db.scalar(select(func.count()).select_from(PartnerWindow)) == 0


async def test_a_new_proposal_from_an_active_partner_ends_the_old(
    app: Any, db: AsyncSession
) -> None:
    row = await ours(db, "ACTIVE", direction="INCOMING")
    old_key = row.pseudonym_key
    await add_windows(db, row.id, 2)
    ref = uuid.uuid4()
    got = await proposal(app, ref, ["MARKET_DATA"])
    assert got["status"] == "PROPOSED"
    row = await the_row(db)
    assert (row.status, row.direction, row.proposal_ref) == ("PROPOSED", "INCOMING", ref)
    assert row.granted_scopes == [] and row.pseudonym_key != old_key
    assert await db.scalar(select(func.count()).select_from(PartnerWindow)) == 0


async def test_crossing_proposals_keep_the_smaller_reference(app: Any, db: AsyncSession) -> None:
    row = await ours(db, "PROPOSED", granted_scopes=[])
    mine = row.proposal_ref
    larger = uuid.UUID(int=mine.int + 1) if mine.int < 2**128 - 1 else None
    smaller = uuid.UUID(int=mine.int - 1) if mine.int > 0 else None
    if larger is not None:
        refused = await proposal(app, larger)
        assert codes(refused) == ["CLOSED"]
        assert (await the_row(db)).proposal_ref == mine
    if smaller is not None:
        taken = await proposal(app, smaller)
        assert taken["status"] == "PROPOSED"
        row = await the_row(db)
        assert (row.direction, row.proposal_ref) == ("INCOMING", smaller)


async def admin(app: Any, query: str, variables: dict[str, Any]) -> dict[str, Any]:
    return await run(app, Viewer(role=Role.ADMIN), query, variables, manifest=None)


def admin_mutation(name: str, input_type: str = "PartnershipIdInput") -> str:
    return f"mutation($input: {input_type}!) {{ {name}(input: $input) {ADMIN_PAYLOAD} }}"


async def test_admins_are_refused_before_any_call(app: Any, db: AsyncSession) -> None:
    propose = admin_mutation("proposePartnership", "ProposePartnershipInput")
    bad = await admin(app, propose, {"input": {"baseUrl": "ftp://x", "scopes": ["COVER"]}})
    assert [(e["field"], e["code"]) for e in bad["proposePartnership"]["errors"]] == [
        ("baseUrl", "INVALID")
    ]
    empty = await admin(app, propose, {"input": {"baseUrl": PARTNER, "scopes": []}})
    assert codes(empty["proposePartnership"]) == ["REQUIRED"]
    long = await admin(app, propose, {"input": {"baseUrl": "https://" + "x" * 600, "scopes": []}})
    assert codes(long["proposePartnership"]) == ["INVALID"]

    unknown = await admin(
        app, admin_mutation("endPartnership"), {"input": {"partnershipId": gid(999)}}
    )
    assert codes(unknown["endPartnership"]) == ["NOT_FOUND"]
    assert unknown["endPartnership"]["partnership"] is None
    malformed = await admin(
        app, admin_mutation("endPartnership"), {"input": {"partnershipId": "x"}}
    )
    assert codes(malformed["endPartnership"]) == ["NOT_FOUND"]

    row = await ours(db, "SUSPENDED", suspended_by="PARTNER")
    pid = gid(row.id)
    for name, code in (
        ("resumePartnership", "FORBIDDEN"),  # the partner suspended it
        ("suspendPartnership", "CLOSED"),
        ("rejectPartnership", "CLOSED"),  # not a proposal made to us
    ):
        got = await admin(app, admin_mutation(name), {"input": {"partnershipId": pid}})
        assert codes(got[name]) == [code], name
        assert got[name]["partnership"]["status"] == "SUSPENDED"
    accept = admin_mutation("acceptPartnership", "AcceptPartnershipInput")
    got = await admin(app, accept, {"input": {"partnershipId": pid}})
    assert codes(got["acceptPartnership"]) == ["CLOSED"]
    proposed = await admin(app, propose, {"input": {"baseUrl": PARTNER, "scopes": ["COVER"]}})
    assert codes(proposed["proposePartnership"]) == ["ALREADY_EXISTS"]

    # A proposal made to us: accepting with scopes it did not ask for is refused.
    await db.execute(delete(Partnership))
    await db.commit()
    row = await ours(db, "PROPOSED", direction="INCOMING", requested_scopes=["COVER"])
    got = await admin(
        app, accept, {"input": {"partnershipId": gid(row.id), "scopes": ["AVAILABILITY"]}}
    )
    assert [(e["field"], e["code"]) for e in got["acceptPartnership"]["errors"]] == [
        ("scopes", "INVALID")
    ]
    assert got["acceptPartnership"]["partnership"]["status"] == "PROPOSED"
    # Proposing to an instance that has proposed to us: answer it instead.
    proposed = await admin(app, propose, {"input": {"baseUrl": PARTNER, "scopes": ["COVER"]}})
    assert codes(proposed["proposePartnership"]) == ["CLOSED"]


async def test_only_admins_see_partnerships(app: Any, db: AsyncSession) -> None:
    row = await ours(db, "ACTIVE")
    node = "query($id: ID!) { node(id: $id) { ... on Partnership { baseUrl } } }"
    got = await admin(app, node, {"id": gid(row.id)})
    assert got["node"] == {"baseUrl": PARTNER}
    for viewer in (Viewer(), Viewer(role=Role.LA_ANALYST, la_code="E09000003")):
        async with session_factory(app.state.engine)() as session:
            result = await create_schema().execute(
                node,
                variable_values={"id": gid(row.id)},
                context_value=Context(session=session, viewer=viewer, limits=Limits()),
            )
        assert result.data == {"node": None}


async def test_admins_hear_of_a_proposal_as_it_arrives(app: Any, db: AsyncSession) -> None:
    subscription = (
        "subscription { partnershipChanged { kind partnership { baseUrl status direction } } }"
    )
    ctx = LiveContext(
        sessions=app.state.sessions,
        events=app.state.events,
        limits=Limits(),
        viewer=Viewer(role=Role.ADMIN),
    )
    stream = await create_schema().subscribe(subscription, context_value=ctx)
    assert not isinstance(stream, ExecutionResult), stream
    try:
        first = asyncio.ensure_future(anext(stream))
        await asyncio.sleep(0.2)  # subscribed before the proposal commits
        await proposal(app, uuid.uuid4())
        result = await asyncio.wait_for(first, timeout=5)
    finally:
        await stream.aclose()
    assert not result.errors, result.errors
    assert result.data == {
        "partnershipChanged": {
            "kind": "PROPOSED",
            "partnership": {"baseUrl": PARTNER, "status": "PROPOSED", "direction": "INCOMING"},
        }
    }


async def test_a_proposal_without_a_readable_manifest_is_refused(
    app: Any, db: AsyncSession
) -> None:
    variables = {
        "proposalRef": str(uuid.uuid4()),
        "baseUrl": PARTNER,
        "scopes": ["COVER"],
        "protocolVersion": "coopnet-federation/1",
    }
    # No manifest from the door, and none can be read (no federation client here).
    got = await run(app, partner(), PROPOSE, {"input": variables}, manifest=None)
    assert codes(got["peerProposePartnership"]) == ["PARTNER_BAD_MANIFEST"]
    long_ref = {**variables, "proposalRef": "x" * 101}
    got = await run(app, partner(), PROPOSE, {"input": long_ref})
    errors = got["peerProposePartnership"]["errors"]
    assert [(e["field"], e["code"]) for e in errors] == [("proposalRef", "INVALID")]
    await db.rollback()
    assert await db.scalar(select(func.count()).select_from(Partnership)) == 0
