"""The care vocabulary (care/vocabulary.py, migration 0018): `careTerms` for members and no
one else, admins' management with typed errors, every mutation that takes skills or needs
refusing an unknown code with UNKNOWN_CARE_TERM and changing nothing, the database's own
checks, and a skill given as a label matching the need in `coverCandidates`."""

from __future__ import annotations

from typing import Any

import pytest
from sqlalchemy import select, text
from sqlalchemy.exc import IntegrityError
from sqlalchemy.ext.asyncio import AsyncSession

from care.enums import Role
from care.errors import ErrorCode
from care.models import CareTerm, Cluster, PaSkill, Referral, ServiceUserProfile
from schema.mutations.runner import error_for_integrity
from tests.conftest import Api
from tests.factories import BARNET, Build, gid
from tests.schema.test_cover_candidates import World, candidates, pa
from tests.schema.test_cover_candidates import w as w  # noqa: F401  (the fixture)

TERMS = """query($use: CareTermUse, $all: Boolean! = false, $review: Boolean) {
  careTerms(use: $use, includeInactive: $all, needsReview: $review) {
    code label description kind active needsReview } }"""
ADD = """mutation($input: AddCareTermInput!) { addCareTerm(input: $input) {
  careTerm { code label kind active needsReview } errors { field code } } }"""
UPDATE = """mutation($code: String!, $input: UpdateCareTermInput!) {
  updateCareTerm(code: $code, input: $input) {
    careTerm { code label active needsReview kind } errors { field code } } }"""
DELETE = """mutation($code: String!) { deleteCareTerm(code: $code) {
  careTerm { code } errors { field code } } }"""
UPDATE_PA = """mutation($id: ID!, $input: UpdatePersonalAssistantInput!) {
  updatePersonalAssistant(id: $id, input: $input) { errors { field code message } } }"""
UPDATE_SU = """mutation($id: ID!, $input: UpdateServiceUserInput!) {
  updateServiceUser(id: $id, input: $input) { errors { field code message } } }"""
CREATE_CLUSTER = """mutation($input: CreateClusterInput!) {
  createCluster(input: $input) { cluster { needTags } errors { field code } } }"""
RECORD_REFERRAL = """mutation($input: RecordReferralInput!) {
  recordReferral(input: $input) { referral { needs } errors { field code } } }"""

ADMIN = (Role.ADMIN, None)


def codes(data: dict[str, Any]) -> list[str]:
    return [t["code"] for t in data["careTerms"]]


async def _world(db: AsyncSession) -> dict[str, Any]:
    b = Build(db)
    await b.las()
    await b.coop()
    coordinator = await b.worker("Cora Ordinator")
    cluster = await b.cluster("Finchley", support_worker=coordinator)
    su = await b.service_user("Ada User", cluster=cluster, needs=["personal-care"])
    pa_ = await b.pa("Pat Assistant", cluster=cluster, skills=["personal-care"])
    await db.commit()
    return {"coordinator": coordinator.id, "cluster": cluster.id, "su": su.id, "pa": pa_.id}


# --- reading ------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "role", [Role.ADMIN, Role.COORDINATOR, Role.PA, Role.SERVICE_USER, Role.CARER]
)
async def test_every_member_reads_the_vocabulary(api: Api, db: AsyncSession, role: Role) -> None:
    world = await _world(db)
    data = await api.data(TERMS, as_=(role, world["pa"]))
    found = codes(data)
    for code in ("personal-care", "medication-support", "peg-feeding", "end-of-life"):
        assert code in found
    personal = next(t for t in data["careTerms"] if t["code"] == "personal-care")
    assert personal["label"] == "Personal care" and personal["description"]
    assert personal["kind"] == "NEED" and personal["active"] is True
    labels = [t["label"] for t in data["careTerms"]]
    assert labels == sorted(labels)
    # Need pickers leave out skill-only terms; skill pickers have everything.
    needs = codes(await api.data(TERMS, {"use": "NEED"}, as_=(role, world["pa"])))
    assert "first-aid" not in needs and "personal-care" in needs
    assert "first-aid" in codes(await api.data(TERMS, {"use": "SKILL"}, as_=ADMIN))


async def test_anonymous_and_la_analysts_may_not_read_it(api: Api) -> None:
    assert await api.refused(TERMS) == "UNAUTHENTICATED"
    token = api.token(Role.LA_ANALYST, la=BARNET)
    assert await api.refused(TERMS, token=token) == "FORBIDDEN"


# --- managing -----------------------------------------------------------------------------


async def test_admins_add_edit_deactivate_and_delete_terms(api: Api, db: AsyncSession) -> None:
    new = {"code": "tracheostomy-care", "label": "Tracheostomy care", "description": "Suction."}
    added = (await api.data(ADD, {"input": new}, as_=ADMIN))["addCareTerm"]
    assert added == {
        "careTerm": {
            "code": "tracheostomy-care",
            "label": "Tracheostomy care",
            "kind": "NEED",
            "active": True,
            "needsReview": False,
        },
        "errors": [],
    }
    again = (await api.data(ADD, {"input": new}, as_=ADMIN))["addCareTerm"]
    assert again == {"careTerm": None, "errors": [{"field": "code", "code": "ALREADY_EXISTS"}]}
    for bad in ("Tracheostomy Care", "trach--care", "-trach", "trach_care", "x" * 101, ""):
        payload = (await api.data(ADD, {"input": {**new, "code": bad}}, as_=ADMIN))["addCareTerm"]
        assert payload["errors"] == [{"field": "code", "code": "INVALID"}], bad
    blank = await api.data(ADD, {"input": {**new, "code": "x1", "label": " "}}, as_=ADMIN)
    assert blank["addCareTerm"]["errors"] == [{"field": "label", "code": "REQUIRED"}]

    changed = await api.data(
        UPDATE, {"code": "tracheostomy-care", "input": {"active": False}}, as_=ADMIN
    )
    assert changed["updateCareTerm"]["careTerm"]["active"] is False
    assert "tracheostomy-care" not in codes(await api.data(TERMS, as_=ADMIN))
    assert "tracheostomy-care" in codes(await api.data(TERMS, {"all": True}, as_=ADMIN))
    unknown = await api.data(UPDATE, {"code": "nope", "input": {"label": "N"}}, as_=ADMIN)
    assert unknown["updateCareTerm"]["errors"] == [{"field": "code", "code": "NOT_FOUND"}]

    gone = (await api.data(DELETE, {"code": "tracheostomy-care"}, as_=ADMIN))["deleteCareTerm"]
    assert gone == {"careTerm": None, "errors": []}
    assert await db.get(CareTerm, "tracheostomy-care") is None


async def test_a_term_in_use_is_not_deleted_nor_made_skill_only(api: Api, db: AsyncSession) -> None:
    await _world(db)
    refused = (await api.data(DELETE, {"code": "personal-care"}, as_=ADMIN))["deleteCareTerm"]
    assert refused["errors"] == [{"field": "code", "code": "IN_USE"}]
    skill_only = await api.data(
        UPDATE, {"code": "personal-care", "input": {"kind": "SKILL"}}, as_=ADMIN
    )
    assert skill_only["updateCareTerm"]["errors"] == [{"field": "kind", "code": "IN_USE"}]
    term = await db.get(CareTerm, "personal-care", populate_existing=True)
    assert term is not None and term.kind == "NEED"
    # Nor by going round the API: the database refuses too.
    with pytest.raises(IntegrityError, match="is in use") as caught:
        await db.execute(text("DELETE FROM care_term WHERE code = 'personal-care'"))
    await db.rollback()
    assert error_for_integrity(caught.value).code is ErrorCode.IN_USE


@pytest.mark.parametrize("role", [Role.COORDINATOR, Role.PA])
async def test_only_admins_manage_the_vocabulary(api: Api, db: AsyncSession, role: Role) -> None:
    world = await _world(db)
    who = (role, world["coordinator"] if role is Role.COORDINATOR else world["pa"])
    new = {"code": "new-term", "label": "New"}
    assert await api.refused(ADD, {"input": new}, as_=who) == "FORBIDDEN"
    update = {"code": "personal-care", "input": {"active": False}}
    assert await api.refused(UPDATE, update, as_=who) == "FORBIDDEN"
    assert await api.refused(DELETE, {"code": "first-aid"}, as_=who) == "FORBIDDEN"
    assert await db.get(CareTerm, "new-term") is None
    term = await db.get(CareTerm, "personal-care")
    assert term is not None and term.active


# --- unknown codes change nothing ---------------------------------------------------------


async def test_unknown_skills_and_needs_are_typed_errors_that_change_nothing(
    api: Api, db: AsyncSession
) -> None:
    world = await _world(db)
    coordinator = api.token(Role.COORDINATOR, world["coordinator"])
    pa_id, su_id = gid("PersonalAssistant", world["pa"]), gid("ServiceUser", world["su"])

    skills = [{"name": "Personal Care"}, {"name": "juggling"}]
    body = await api.data(
        UPDATE_PA, {"id": pa_id, "input": {"skills": skills, "maxTravelKm": 3}}, token=coordinator
    )
    [error] = body["updatePersonalAssistant"]["errors"]
    assert (error["field"], error["code"]) == ("skills", "UNKNOWN_CARE_TERM")
    assert "juggling" in error["message"]

    body = await api.data(
        UPDATE_SU, {"id": su_id, "input": {"needs": ["dementia", "sudoku"]}}, token=coordinator
    )
    assert [(e["field"], e["code"]) for e in body["updateServiceUser"]["errors"]] == [
        ("needs", "UNKNOWN_CARE_TERM")
    ]
    # A skill-only term is no need.
    body = await api.data(
        UPDATE_SU, {"id": su_id, "input": {"needs": ["first-aid"]}}, token=coordinator
    )
    assert body["updateServiceUser"]["errors"][0]["code"] == "UNKNOWN_CARE_TERM"

    cluster = {"name": "Neuro", "kind": "NEED_BASED", "localAuthority": BARNET}
    body = await api.data(
        CREATE_CLUSTER, {"input": {**cluster, "needTags": ["neurology"]}}, as_=ADMIN
    )
    assert body["createCluster"] == {
        "cluster": None,
        "errors": [{"field": "needTags", "code": "UNKNOWN_CARE_TERM"}],
    }
    referral = {
        "localAuthority": BARNET,
        "postcodeDistrict": "N12",
        "hoursPerWeek": 5,
        "referredOn": "2026-01-05",
        "needs": ["Personal care", "meds"],
    }
    body = await api.data(RECORD_REFERRAL, {"input": referral}, as_=ADMIN)
    assert body["recordReferral"] == {
        "referral": None,
        "errors": [{"field": "needs", "code": "UNKNOWN_CARE_TERM"}],
    }

    # Nothing changed.
    db.expire_all()
    assert list(await db.scalars(select(PaSkill.skill).where(PaSkill.pa_id == world["pa"]))) == [
        "personal-care"
    ]
    profile = await db.get(ServiceUserProfile, world["su"])
    assert profile is not None and profile.needs == ["personal-care"]
    assert await db.scalar(select(Cluster.id).where(Cluster.name == "Neuro")) is None
    assert await db.scalar(select(Referral.id)) is None


async def test_labels_are_normalised_and_inactive_terms_are_kept_but_not_newly_given(
    api: Api, db: AsyncSession
) -> None:
    world = await _world(db)
    coordinator = api.token(Role.COORDINATOR, world["coordinator"])
    pa_id, su_id = gid("PersonalAssistant", world["pa"]), gid("ServiceUser", world["su"])
    body = await api.data(
        UPDATE_PA,
        {"id": pa_id, "input": {"skills": [{"name": " Personal Care"}, {"name": "PEG feeding"}]}},
        token=coordinator,
    )
    assert body["updatePersonalAssistant"]["errors"] == []
    held = await db.scalars(
        select(PaSkill.skill).where(PaSkill.pa_id == world["pa"]).order_by(PaSkill.skill)
    )
    assert list(held) == ["peg-feeding", "personal-care"]

    await api.data(UPDATE, {"code": "peg-feeding", "input": {"active": False}}, as_=ADMIN)
    # The PA keeps it, and saving their skills unchanged still works...
    skills = [{"name": "peg-feeding"}, {"name": "personal-care"}]
    body = await api.data(UPDATE_PA, {"id": pa_id, "input": {"skills": skills}}, token=coordinator)
    assert body["updatePersonalAssistant"]["errors"] == []
    # ...but nobody is newly given it.
    body = await api.data(
        UPDATE_SU, {"id": su_id, "input": {"needs": ["peg-feeding"]}}, token=coordinator
    )
    assert body["updateServiceUser"]["errors"][0]["code"] == "UNKNOWN_CARE_TERM"


async def test_the_database_refuses_unknown_codes(db: AsyncSession) -> None:
    world = await _world(db)
    with pytest.raises(IntegrityError, match="fk_pa_skill_skill_care_term") as caught:
        db.add(PaSkill(pa_id=world["pa"], skill="Personal Care"))
        await db.flush()
    await db.rollback()
    assert error_for_integrity(caught.value).code is ErrorCode.UNKNOWN_CARE_TERM
    for statement in (
        "UPDATE service_user_profile SET needs = '{personal-care,Hoist}'",
        "UPDATE cluster SET need_tags = '{mystery}'",
        "INSERT INTO referral (la_code, postcode_district, needs, hours_per_week, referred_on,"
        " status) VALUES ('E09000003', 'N12', '{meds}', 5, '2026-01-01', 'WAITING')",
    ):
        with pytest.raises(IntegrityError, match="unknown care terms") as caught:
            await db.execute(text(statement))
        await db.rollback()
        # A mutation meeting it (a race with a term's deletion) says so in its payload.
        assert error_for_integrity(caught.value).code is ErrorCode.UNKNOWN_CARE_TERM


# --- matching -----------------------------------------------------------------------------


async def test_a_skill_given_as_a_label_matches_the_need_in_cover_candidates(
    api: Api, w: World
) -> None:
    # Before the vocabulary, "Personal Care" never matched the need personal-care.
    someone = await pa(w, "Labelled", cluster=w.cluster, skills=())
    await w.db.commit()
    assert "Labelled" not in {c["pa"]["name"] for c in await candidates(api, w)}
    token = api.token(Role.COORDINATOR, w.coordinator.id)
    body = await api.data(
        UPDATE_PA,
        {
            "id": gid("PersonalAssistant", someone.id),
            "input": {"skills": [{"name": "Personal Care"}]},
        },
        token=token,
    )
    assert body["updatePersonalAssistant"]["errors"] == []
    assert "Labelled" in {c["pa"]["name"] for c in await candidates(api, w)}
