"""`schema.graphql` is the published contract: it must match the code."""

from __future__ import annotations

from pathlib import Path

from schema import create_schema

SCHEMA_FILE = Path(__file__).resolve().parents[2] / "schema.graphql"


def test_committed_schema_matches_the_code() -> None:
    committed = SCHEMA_FILE.read_text()
    current = create_schema().as_str() + "\n"
    assert committed == current, "schema.graphql is stale: run `make schema` and commit it"


def test_contract_type_names_are_present() -> None:
    sdl = SCHEMA_FILE.read_text()
    for name in (
        "LocalAuthority",
        "Coop",
        "ServiceUser",
        "PersonalAssistant",
        "Carer",
        "Cluster",
        "Pool",
        "AvailabilityWindow",
        "Visit",
    ):
        assert f"type {name} " in sdl, name
    assert "interface Member implements Node" in sdl
