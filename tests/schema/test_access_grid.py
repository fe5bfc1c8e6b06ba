"""The access grid, generated from the schema: every root field (query, mutation,
subscription) declares who may ask, and every kind of caller gets the documented answer
for every one of them; as an admin against the demo co-op, every field of every object
type reachable from `Query` resolves without an error.

Operations are built from the schema's own types with dummy but well-typed arguments and
run against the real database through the schema (so the partner kind, which has no token
yet, is covered too)."""

from __future__ import annotations

import asyncio
import base64
import json
import re
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
from graphql import (
    GraphQLField,
    GraphQLInterfaceType,
    GraphQLObjectType,
    GraphQLSchema,
    Undefined,
    get_named_type,
    is_enum_type,
    is_input_object_type,
    is_interface_type,
    is_list_type,
    is_non_null_type,
    is_object_type,
)
from sqlalchemy import select, text
from sqlalchemy.ext.asyncio import AsyncSession
from strawberry.types.base import get_object_definition

from api.db import session_factory
from care.demo import load_demo
from care.enums import MembershipClass, PartnerScope, PartnershipStatus, Role
from care.models import Cluster, Member, PaProfile, Partnership, ServiceUserProfile
from care.viewer import PrincipalKind, Viewer
from schema import create_schema
from schema.context import Context, Limits
from schema.mutations import Mutation
from schema.permissions import Access, check_declared, declared_access
from schema.query import Query
from schema.subscriptions import LiveContext, Subscription

REFUSALS = {"UNAUTHENTICATED", "FORBIDDEN"}
ROOTS = {"query": Query, "mutation": Mutation, "subscription": Subscription}


def gid(type_name: str, pk: int) -> str:
    return base64.b64encode(f"{type_name}:{pk}".encode()).decode()


def rules() -> dict[tuple[str, str], Access]:
    """(operation, field name) -> the declared rule, for every root field."""
    out: dict[tuple[str, str], Access] = {}
    names = create_schema().config.name_converter
    for operation, root in ROOTS.items():
        for field in get_object_definition(root, strict=True).fields:
            rule = declared_access(field)
            assert rule is not None, f"{operation} {field.python_name} declares no Access"
            out[(operation, names.from_field(field))] = rule
    return out


def test_every_root_field_declares_access() -> None:
    graphql_schema = create_schema()._schema
    declared = rules()
    for operation in ROOTS:
        root = graphql_schema.get_root_type(_operation_type(operation))
        assert root is not None
        assert {name for (op, name) in declared if op == operation} == set(root.fields)
    # Every mutation field is nullable: an unexpected failure nulls that field only.
    mutation_root = graphql_schema.mutation_type
    assert mutation_root is not None
    for name, field in mutation_root.fields.items():
        assert not is_non_null_type(field.type), name


def test_a_root_field_without_a_rule_fails_the_build() -> None:
    import strawberry

    @strawberry.type
    class Leaky:
        @strawberry.field
        def secret(self) -> str:
            return "x"

    with pytest.raises(TypeError, match="Leaky.secret"):
        check_declared(Leaky)


def _operation_type(operation: str) -> Any:
    from graphql.language import OperationType

    return OperationType(operation)


# --- operations from the schema -------------------------------------------------------------

SCALARS = {
    "String": '"x"',
    "Int": "1",
    "Float": "1.5",
    "Boolean": "false",
    "DateTime": '"2026-12-01T10:00:00+00:00"',
    "Date": '"2026-12-01"',
    "Time": '"10:00:00"',
}
LATER_DATETIME = {"DateTime": '"2026-12-08T10:00:00+00:00"', "Date": '"2026-12-08"'}
LATER = {name: LATER_DATETIME for name in ("startsBefore", "endsAt", "to")}


def literal(type_: Any, name: str, ids: dict[str, str]) -> str:
    """A well-typed GraphQL literal for an argument or input field."""
    if is_non_null_type(type_):
        return literal(type_.of_type, name, ids)
    if is_list_type(type_):
        return f"[{literal(type_.of_type, name, ids)}]"
    if is_enum_type(type_):
        return next(iter(type_.values))
    if is_input_object_type(type_):
        return "{" + ", ".join(_required(type_.fields, ids)) + "}"
    if type_.name == "ID":
        return json.dumps(ids.get(name, gid("Nothing", 999_999)))
    if name in LATER and type_.name in LATER[name]:
        return LATER[name][type_.name]  # a range's end comes after its start
    return SCALARS.get(type_.name, '"x"')


def _required(fields: dict[str, Any], ids: dict[str, str]) -> list[str]:
    return [
        f"{name}: {literal(f.type, name, ids)}"
        for name, f in fields.items()
        if is_non_null_type(f.type) and f.default_value is Undefined
    ]


def arguments(field: GraphQLField, ids: dict[str, str], extra: dict[str, str] = {}) -> str:  # noqa: B006
    parts = _required(field.args, ids) + [f"{k}: {v}" for k, v in extra.items() if k in field.args]
    return f"({', '.join(parts)})" if parts else ""


def minimal(operation: str, name: str, field: GraphQLField, ids: dict[str, str]) -> str:
    """The smallest operation that runs one root field."""
    named = get_named_type(field.type)
    selection = " { __typename }" if is_object_type(named) or is_interface_type(named) else ""
    return f"{operation} {{ {name}{arguments(field, ids)}{selection} }}"


# --- callers --------------------------------------------------------------------------------


@dataclass
class Demo:
    viewers: dict[str, Viewer]
    ids: dict[str, str]  # real ids, by argument name, for fields that need one to run


async def demo(db: AsyncSession) -> Demo:
    await load_demo(db)
    # The partners' partnership row (id 1), as the door finds it for a partner caller.
    await db.execute(
        text(
            "INSERT INTO partnership (id, base_url, graphql_endpoint, proposal_ref, direction,"
            " status, requested_scopes, granted_scopes, protocol_version, pseudonym_key,"
            " coop_name)"
            " VALUES (1, 'https://partner.example', 'https://partner.example/graphql',"
            " gen_random_uuid(), 'INCOMING', 'ACTIVE', '{AVAILABILITY,COVER,MARKET_DATA}',"
            " '{AVAILABILITY,COVER,MARKET_DATA}', 'coopnet-federation/1', '\\x01',"
            " 'Partner Care Co-op')"
        )
    )
    await db.execute(text("SELECT setval('partnership_id_seq', 1)"))
    await db.commit()
    cluster_id, coordinator = (
        await db.execute(
            select(Cluster.id, Cluster.support_worker_id)
            .where(Cluster.support_worker_id.is_not(None))
            .order_by(Cluster.id)
            .limit(1)
        )
    ).one()
    pa = await db.scalar(select(PaProfile.member_id).order_by(PaProfile.member_id).limit(1))
    su = await db.scalar(
        select(ServiceUserProfile.member_id).order_by(ServiceUserProfile.member_id).limit(1)
    )
    carer = await db.scalar(
        select(Member.id)
        .where(Member.membership_class == MembershipClass.CARER.value)
        .order_by(Member.id)
        .limit(1)
    )
    assert pa and su and carer and coordinator
    viewers = {
        "anonymous": Viewer(),
        "la_analyst": Viewer(role=Role.LA_ANALYST, la_code="E09000003"),
        "admin": Viewer(role=Role.ADMIN),
        "coordinator": Viewer(role=Role.COORDINATOR, member_id=coordinator),
        "pa": Viewer(role=Role.PA, member_id=pa),
        "service_user": Viewer(role=Role.SERVICE_USER, member_id=su),
        "carer": Viewer(role=Role.CARER, member_id=carer),
        # Partner instances: a verified instance with no partnership, an active partner
        # holding every scope, and partnerships proposed, suspended, ended.
        "instance": Viewer(partner="https://stranger.example"),
        "partner": Viewer(
            partner="https://partner.example",
            partnership_id=1,
            partnership_status=PartnershipStatus.ACTIVE.value,
            scopes=frozenset(s.value for s in PartnerScope),
        ),
        "partner_availability_only": Viewer(
            partner="https://partner.example",
            partnership_id=1,
            partnership_status=PartnershipStatus.ACTIVE.value,
            scopes=frozenset({PartnerScope.AVAILABILITY.value}),
        ),
        **{
            f"partner_{status.value.lower()}": Viewer(
                partner="https://partner.example",
                partnership_id=1,
                partnership_status=status.value,
            )
            for status in (
                PartnershipStatus.PROPOSED,
                PartnershipStatus.SUSPENDED,
                PartnershipStatus.ENDED,
                PartnershipStatus.REJECTED,
            )
        },
    }
    return Demo(viewers=viewers, ids={"clusterId": gid("Cluster", cluster_id)})


def expected(rule: Access, viewer: Viewer) -> str | None:
    """The documented answer: admitted, or refused with the code for the caller's kind."""
    if rule.allows(viewer):
        return None
    return "UNAUTHENTICATED" if viewer.kind is PrincipalKind.ANONYMOUS else "FORBIDDEN"


def expected_reason(rule: Access, viewer: Viewer) -> str | None:
    """A partner refused also learns why (docs/federation.md, section 7)."""
    if viewer.kind is not PrincipalKind.PARTNER or rule.allows(viewer):
        return None
    if not rule.peer and rule.scope is None:
        # A field for members: the partnership's state first, then "not yours".
        status = viewer.partnership_status
        return {
            None: "NOT_A_PARTNER",
            "PROPOSED": "NOT_A_PARTNER",
            "REJECTED": "NOT_A_PARTNER",
            "SUSPENDED": "PARTNERSHIP_SUSPENDED",
            "ENDED": "PARTNERSHIP_ENDED",
        }.get(status, "OUT_OF_SCOPE")
    reason = rule.partner_refusal(viewer)
    return reason.value if reason else None


def test_partners_are_refused_with_the_reason_of_their_partnership() -> None:
    """The reasons, spelled out for one field of each kind of rule."""
    from schema.permissions import COOP, PARTNER_AVAILABILITY, PARTNER_MARKET_DATA, PEERS

    def viewer(status: str | None, *scopes: PartnerScope) -> Viewer:
        return Viewer(
            partner="https://p.example",
            partnership_id=None if status is None else 1,
            partnership_status=status,
            scopes=frozenset(s.value for s in scopes),
        )

    active = viewer("ACTIVE", PartnerScope.AVAILABILITY)
    assert PEERS.partner_refusal(viewer(None)) is None
    assert PEERS.partner_refusal(viewer("ENDED")) is None
    assert PARTNER_AVAILABILITY.partner_refusal(active) is None
    refusals = {
        (COOP, active): "OUT_OF_SCOPE",
        (PARTNER_MARKET_DATA, active): "OUT_OF_SCOPE",
        (PARTNER_AVAILABILITY, viewer(None)): "NOT_A_PARTNER",
        (PARTNER_AVAILABILITY, viewer("PROPOSED", PartnerScope.AVAILABILITY)): "NOT_A_PARTNER",
        (PARTNER_AVAILABILITY, viewer("SUSPENDED")): "PARTNERSHIP_SUSPENDED",
        (PARTNER_AVAILABILITY, viewer("ENDED")): "PARTNERSHIP_ENDED",
        (COOP, viewer("SUSPENDED")): "PARTNERSHIP_SUSPENDED",
    }
    for (rule, who), reason in refusals.items():
        refusal = rule.partner_refusal(who)
        assert refusal is not None and refusal.value == reason, (rule, who)
        assert not rule.allows(who)
    # Members and anonymous callers never pass a partner rule.
    for rule in (PEERS, PARTNER_AVAILABILITY):
        assert not rule.allows(Viewer())
        assert not rule.allows(Viewer(role=Role.ADMIN, member_id=1))


async def run(app: Any, viewer: Viewer, operation: str) -> dict[str, Any]:
    async with session_factory(app.state.engine)() as session:
        result = await create_schema().execute(
            operation, context_value=Context(session=session, viewer=viewer, limits=Limits())
        )
    return {"data": result.data, "errors": [e.formatted for e in result.errors or []]}


async def subscribe(app: Any, viewer: Viewer, operation: str) -> dict[str, Any]:
    """The subscription's first answer: its error, or none while it waits for events."""
    ctx = LiveContext(
        sessions=app.state.sessions, events=app.state.events, limits=Limits(), viewer=viewer
    )
    stream = await create_schema().subscribe(operation, context_value=ctx)
    try:
        first = await asyncio.wait_for(anext(stream), timeout=0.3)
    except TimeoutError:
        return {"errors": []}  # admitted: listening
    finally:
        await stream.aclose()
    return {"errors": [e.formatted for e in first.errors or []]}


def codes(body: dict[str, Any], name: str) -> list[str]:
    return [
        e.get("extensions", {}).get("code", "")
        for e in body["errors"]
        if not e.get("path") or e["path"][0] == name
    ]


def reasons(body: dict[str, Any], name: str) -> list[str]:
    return [
        e.get("extensions", {}).get("reason", "")
        for e in body["errors"]
        if (not e.get("path") or e["path"][0] == name) and e.get("extensions", {}).get("reason")
    ]


async def test_every_caller_gets_the_declared_answer_on_every_root_field(
    app: Any, db: AsyncSession
) -> None:
    d = await demo(db)
    graphql_schema: GraphQLSchema = create_schema()._schema
    declared = rules()
    assert {v.kind for v in d.viewers.values()} == set(PrincipalKind)
    checked = 0
    for (operation, name), rule in sorted(declared.items()):
        root = graphql_schema.get_root_type(_operation_type(operation))
        assert root is not None
        text = minimal(operation, name, root.fields[name], d.ids)
        for who, viewer in d.viewers.items():
            if operation == "subscription":
                body = await subscribe(app, viewer, text)
            else:
                body = await run(app, viewer, text)
            got = codes(body, name)
            want = expected(rule, viewer)
            assert "INTERNAL_SERVER_ERROR" not in got, (who, text, body)
            if want is None and operation == "subscription":
                assert got == [], (who, text, body)  # admitted: listening for events
            elif want is None:
                assert not REFUSALS & set(got), (who, text, body)
            else:
                assert got == [want], (who, text, body)
                if body.get("data") is not None:
                    assert body["data"][name] is None
                reason = expected_reason(rule, viewer)
                if reason is not None and operation != "subscription":
                    assert reasons(body, name) == [reason], (who, text, body)
            checked += 1
    assert checked == len(declared) * len(d.viewers)


# Rules for partner instances that no root field uses yet (the README lists them).
PARTNER_RULES = ("PEERS", "PARTNER_AVAILABILITY", "PARTNER_COVER", "PARTNER_MARKET_DATA")


def test_the_readme_states_the_declared_rules() -> None:
    """The README's table of rules lists every root field under the rule it declares."""
    readme = (Path(__file__).resolve().parents[2] / "README.md").read_text()
    documented: dict[str, str] = {}
    for line in readme.splitlines():
        match = re.match(r"\| `([A-Z_]+)` \| [^|]+ \| (.+) \|$", line)
        if not match or match.group(1) not in {r.name for r in rules().values()} | set(
            PARTNER_RULES
        ):
            continue
        for part in match.group(2).split(", "):
            names = re.findall(r"`(\w+)`", part)
            operations = ["subscription"] if part.startswith("subscription") else ["query"]
            if "query and subscription" in part:
                operations = ["query", "subscription"]
            for name in names:
                for operation in operations:
                    key = f"{operation} {name}"
                    if operation == "query" and ("query", name) not in rules():
                        key = f"mutation {name}"
                    documented[key] = match.group(1)
    declared = {f"{op} {name}": rule.name for (op, name), rule in rules().items()}
    assert documented == declared


# --- every field of every reachable object type, as an admin ----------------------------------

Hop = str  # a field (with arguments) or an inline fragment ("... on Type")
PATHS = 6  # paths tried per type, shortest first, until one reaches an instance


def _object_fields(t: GraphQLObjectType | GraphQLInterfaceType) -> dict[str, GraphQLField]:
    return dict(t.fields)


def paths(graphql_schema: GraphQLSchema, roots: list[str]) -> dict[str, list[list[Hop]]]:
    """For each object type reachable from the given Query fields, the paths that reach it,
    shortest first (breadth-first)."""
    query = graphql_schema.query_type
    assert query is not None
    found: dict[str, list[list[Hop]]] = {}
    queue: list[tuple[Any, list[Hop]]] = []
    for name in roots:
        field = query.fields[name]
        queue.append((get_named_type(field.type), [name + arguments(field, {}, {"first": "10"})]))
    while queue:
        t, path = queue.pop(0)
        if is_interface_type(t):
            for impl in graphql_schema.get_possible_types(t):
                queue.append((impl, [*path, f"... on {impl.name}"]))
            continue
        if not is_object_type(t):
            continue
        known = found.setdefault(t.name, [])
        if len(known) >= PATHS or len(path) > 6:
            continue
        known.append(path)
        for name, field in _object_fields(t).items():
            target = get_named_type(field.type)
            if is_object_type(target) or is_interface_type(target):
                if len(found.get(target.name, [])) < PATHS:
                    hop = name + arguments(field, {}, {"first": "2"})
                    queue.append((target, [*path, hop]))
    return found


def full_selection(t: GraphQLObjectType) -> str:
    parts = ["__typename"]
    for name, field in t.fields.items():
        target = get_named_type(field.type)
        args = arguments(field, {}, {"first": "2"})
        if is_object_type(target) or is_interface_type(target):
            parts.append(f"{name}{args} {{ __typename }}")
        else:
            parts.append(f"{name}{args}")
    return " ".join(parts)


def nest(path: list[Hop], inner: str) -> str:
    text = inner
    for hop in reversed(path):
        text = f"{hop} {{ __typename {text} }}"
    return "{ " + text + " }"


def objects_at(data: Any, path: list[Hop]) -> Iterator[dict[str, Any]]:
    """The response objects at the end of a path (through lists)."""
    if data is None:
        return
    if isinstance(data, list):
        for item in data:
            yield from objects_at(item, path)
        return
    if not path:
        yield data
        return
    hop, rest = path[0], path[1:]
    if hop.startswith("... on "):
        if data.get("__typename") == hop.removeprefix("... on "):
            yield from objects_at(data, rest)
        return
    yield from objects_at(data.get(hop.split("(")[0]), rest)


async def offer_some_cover(app: Any, admin: Viewer) -> None:
    body = await run(
        app,
        admin,
        # Visits still to come: an open request whose visit is over (the demo's times
        # follow the time of day) is refused CLOSED.
        f'{{ coverRequests(status: [OPEN], visitStartsFrom: "{admin.now.isoformat()}", '
        "first: 20) { nodes { id visit { id } } } }",
    )
    for request in body["data"]["coverRequests"]["nodes"]:
        found = await run(
            app,
            admin,
            f'{{ coverCandidates(visitId: "{request["visit"]["id"]}") {{ candidates {{ '
            "... on LocalCoverCandidate { pa { id } } } } }",
        )
        candidates = found["data"]["coverCandidates"]["candidates"]
        if candidates:
            pa = candidates[0]["pa"]["id"]
            made = await run(
                app,
                admin,
                f'mutation {{ offerCover(input: {{coverRequestId: "{request["id"]}", '
                f'paIds: ["{pa}"]}}) {{ offers {{ id }} errors {{ code }} }} }}',
            )
            assert made["errors"] == [] and made["data"]["offerCover"]["offers"], made
            return
    raise AssertionError("no open cover request of the demo has a candidate")


async def receive_partner_window(db: AsyncSession) -> None:
    """An ACTIVE partnership, one window and one cluster notice received from it."""
    await db.execute(
        text(
            """
            WITH p AS (
                INSERT INTO partnership (base_url, graphql_endpoint, proposal_ref, direction,
                    status, requested_scopes, granted_scopes, protocol_version, coop_name,
                    home_la_code, local_authorities, pseudonym_key)
                VALUES ('http://partner.test', 'http://partner.test/graphql',
                    gen_random_uuid(), 'OUTGOING', 'ACTIVE', '{AVAILABILITY}',
                    '{AVAILABILITY}', '1', 'Partner Co-op', 'E09000010',
                    '[{"gssCode": "E09000010", "name": "Enfield"}]', '\\x00')
                RETURNING id),
            c AS (
                INSERT INTO partner_cluster (partnership_id, ref, name, la_code, district,
                    opened_at)
                SELECT id, 'c1', 'Edmonton', 'E09000010', 'N9', now() FROM p)
            INSERT INTO partner_window (partnership_id, ref, period, pa_ref, skills, district,
                travel_km, during)
            SELECT id, 'w1', 0, 'pa1', '[{"skill": "hoist", "expiresOn": "2099-01-01"}]',
                'EN1', 8, tstzrange(now() + interval '1 day', now() + interval '1 day 2 hours')
            FROM p
            """
        )
    )
    await db.commit()


async def add_partnership(db: AsyncSession) -> None:
    db.add(
        Partnership(
            base_url="https://partner-coop.example",
            graphql_endpoint="https://partner-coop.example/graphql",
            proposal_ref=uuid.uuid4(),
            direction="INCOMING",
            status="PROPOSED",
            requested_scopes=["AVAILABILITY"],
            protocol_version="coopnet-federation/1",
            local_authorities=[{"gssCode": "E09000003", "name": "Barnet"}],
        )
    )
    await db.commit()


async def add_cover_exchange(db: AsyncSession) -> None:
    """A partner asked to cover an open cover request of the demo, with its first event
    (cross-boundary cover needs another instance to arise on its own)."""
    await db.execute(
        text(
            """
            WITH p AS (
                INSERT INTO partnership (base_url, graphql_endpoint, proposal_ref, direction,
                    status, requested_scopes, granted_scopes, protocol_version, coop_name,
                    local_authorities, pseudonym_key)
                VALUES ('http://cover-partner.test', 'http://cover-partner.test/graphql',
                    gen_random_uuid(), 'OUTGOING', 'ACTIVE', '{COVER}', '{COVER}', '1',
                    'Cover Partner', '[]', '\\x01')
                RETURNING id),
            r AS (
                SELECT cr.id, cr.visit_id, v.during FROM cover_request cr
                JOIN visit v ON v.id = cr.visit_id
                WHERE cr.status = 'OPEN' ORDER BY cr.id LIMIT 1),
            x AS (
                INSERT INTO cover_exchange (ref, partnership_id, side, status, during,
                    district, skills, pa_ref, hold_expires_at, visit_id, cover_request_id,
                    care_summary)
                SELECT gen_random_uuid(), p.id, 'REQUESTING', 'HELD', r.during, 'N12',
                    '{hoist}', 'pa-ref', now() + interval '1 hour', r.visit_id, r.id,
                    'A summary'
                FROM p, r
                RETURNING id)
            INSERT INTO cover_exchange_event (exchange_id, status, by_side, by_role)
            SELECT id, 'HELD', 'US', 'COORDINATOR' FROM x
            """
        )
    )
    await db.commit()


async def test_an_admin_resolves_every_field_of_every_reachable_type(
    app: Any, db: AsyncSession
) -> None:
    d = await demo(db)
    admin = d.viewers["admin"]
    await offer_some_cover(app, admin)  # the demo co-op has made no offers yet
    await add_partnership(db)  # nor partnerships (those need another instance)
    await receive_partner_window(db)  # nor received anything from a partner
    await add_cover_exchange(db)  # nor asked a partner for cover
    graphql_schema: GraphQLSchema = create_schema()._schema
    declared = rules()
    # Root fields an admin may ask and that need no id (those are covered by the grid).
    query = graphql_schema.query_type
    assert query is not None
    roots = [
        name
        for name, field in query.fields.items()
        if declared[("query", name)].allows(admin)
        and name != "me"  # an admin's token names no member
        and not any(
            is_non_null_type(a.type) and a.default_value is Undefined for a in field.args.values()
        )
    ]
    reachable = paths(graphql_schema, roots)
    uncovered = []
    requests = 0
    for type_name, candidates in sorted(reachable.items()):
        t = graphql_schema.get_type(type_name)
        assert isinstance(t, GraphQLObjectType)
        for path in candidates:
            body = await run(app, admin, nest(path, full_selection(t)))
            requests += 1
            if codes(body, "") == ["QUERY_TOO_COSTLY"]:
                continue  # refused before running: try a shorter way there
            assert body["errors"] == [], (type_name, path, body["errors"])
            if any(objects_at(body["data"], path)):
                break
        else:
            uncovered.append(type_name)
    # Types the demo co-op holds no instance of on any path an admin reads.
    assert uncovered == [], uncovered
    assert "LocalAuthority" in reachable and requests >= len(reachable)


async def test_local_authority_neighbours_resolve(app: Any, db: AsyncSession) -> None:
    await demo(db)
    body = await run(
        app,
        Viewer(),
        "{ localAuthorities { gssCode neighbours { gssCode name } } }",
    )
    assert body["errors"] == []
    neighbours = {a["gssCode"]: a["neighbours"] for a in body["data"]["localAuthorities"]}
    assert any(neighbours.values())
    # Symmetric: each neighbour lists the authority back.
    for code, around in neighbours.items():
        for n in around:
            if n["gssCode"] in neighbours:
                assert code in {m["gssCode"] for m in neighbours[n["gssCode"]]}
