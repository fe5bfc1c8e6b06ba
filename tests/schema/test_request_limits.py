"""Request protection through the real schema: depth, aliases, tokens, page size, cost."""

from __future__ import annotations

from care.enums import Role
from tests.conftest import Api


def admin(api: Api) -> str:
    return api.token(Role.ADMIN)


async def test_depth_bomb_is_refused(api: Api) -> None:
    inner = "id"
    for _ in range(8):
        inner = f"clusters {{ edges {{ node {{ pools {{ clusters {{ {inner} }} }} }} }} }}"
    body = await api.query("{ " + inner + " }", token=admin(api))
    assert body["data"] is None
    assert "depth" in body["errors"][0]["message"]


async def test_alias_bomb_is_refused(api: Api) -> None:
    aliases = " ".join(f"a{i}: coop {{ name }}" for i in range(40))
    body = await api.query("{ " + aliases + " }", token=admin(api))
    assert body["data"] is None
    assert "aliases" in body["errors"][0]["message"].lower()


async def test_token_flood_is_refused(api: Api) -> None:
    fields = " ".join(["name"] * 3000)
    body = await api.query("{ coop { " + fields + " } }", token=admin(api))
    assert body["data"] is None
    assert "token" in body["errors"][0]["message"].lower()


async def test_oversized_page_is_refused(api: Api) -> None:
    body = await api.query("{ clusters(first: 101) { totalCount } }", token=admin(api))
    assert body["data"] is None
    error = body["errors"][0]
    assert error["extensions"]["code"] == "BAD_USER_INPUT"
    assert "between 1 and 100" in error["message"]


async def test_zero_page_is_refused(api: Api) -> None:
    body = await api.query("{ members(first: 0) { totalCount } }", token=admin(api))
    assert body["errors"][0]["extensions"]["code"] == "BAD_USER_INPUT"


async def test_costly_query_is_refused_before_running(api: Api) -> None:
    query = """{ clusters(first: 100) { edges { node { name
        serviceUsers(first: 100) { edges { node { name } } } } } } }"""
    body = await api.query(query, token=admin(api))
    assert body["data"] is None
    error = body["errors"][0]
    assert error["extensions"]["code"] == "QUERY_TOO_COSTLY"
    assert error["extensions"]["cost"] > error["extensions"]["limit"] == 5000


async def test_cost_is_reported(api: Api) -> None:
    body = await api.query("{ clusters(first: 10) { edges { node { name } } } }", token=admin(api))
    assert body["extensions"]["cost"] == {"requested": 42, "limit": 5000}


async def test_bad_cursor_is_a_clear_error(api: Api) -> None:
    body = await api.query('{ clusters(after: "not-a-cursor") { totalCount } }', token=admin(api))
    assert body["errors"][0]["extensions"]["code"] == "BAD_USER_INPUT"
    assert "cursor" in body["errors"][0]["message"]


async def test_field_suggestions_are_off(api: Api) -> None:
    body = await api.query("{ clustrs { totalCount } }", token=admin(api))
    message = body["errors"][0]["message"]
    assert "Cannot query field 'clustrs'" in message
    assert "Did you mean" not in message


async def test_introspection_stays_on(api: Api) -> None:
    from graphql import get_introspection_query

    body = await api.query(get_introspection_query())
    assert not body.get("errors"), body.get("errors")
    names = {t["name"] for t in body["data"]["__schema"]["types"]}
    assert {"Cluster", "ServiceUser", "PersonalAssistant", "Visit"} <= names


async def test_no_stack_trace_on_malformed_request(api: Api) -> None:
    r = await api.client.post(
        "/graphql", content=b"{not json", headers={"Content-Type": "application/json"}
    )
    assert r.status_code == 400
    assert "Traceback" not in r.text


async def test_limit_errors_carry_codes(api: Api) -> None:
    deep = "id"
    for _ in range(8):
        deep = f"clusters {{ edges {{ node {{ pools {{ clusters {{ {deep} }} }} }} }} }}"
    cases = {
        "{ " + deep + " }": "QUERY_TOO_DEEP",
        "{ " + " ".join(f"a{i}: coop {{ name }}" for i in range(40)) + " }": "TOO_MANY_ALIASES",
        "{ coop { " + " ".join(["name"] * 3000) + " } }": "TOO_MANY_TOKENS",
        "{ coop { name }": "GRAPHQL_PARSE_FAILED",
        "{ nothing }": "GRAPHQL_VALIDATION_FAILED",
    }
    for query, code in cases.items():
        body = await api.query(query, token=admin(api))
        assert body["errors"][0]["extensions"]["code"] == code, (code, body["errors"])
