"""Migration 0018 (the care vocabulary) on a database with free-text skills and needs: the
values are mapped to codes (case, spaces, apostrophes, synonyms), two spellings of one
skill merge keeping the later expiry, values that map to nothing are kept as inactive
terms marked for review and reported, and the downgrade leaves the codes in place."""

from __future__ import annotations

import asyncio
import logging
import uuid
from collections.abc import Iterator

import pytest
from alembic.script import ScriptDirectory
from sqlalchemy.engine import make_url

from api.migrate import alembic_config, downgrade, upgrade
from tests.conftest import _in_thread
from tests.test_migration_0006 import _run, _sql

# Two PAs, a person, a need-based cluster and a referral, all written by hand over years.
DATA = """
INSERT INTO local_authority (gss_code, name) VALUES ('E09000003', 'Barnet');
INSERT INTO member (id, name, membership_class)
  VALUES (1, 'Pat', 'WORKER'), (2, 'Quinn', 'WORKER'), (3, 'Ada', 'SERVICE_USER');
INSERT INTO pa_profile (member_id, hourly_pay_pence) VALUES (1, 1300), (2, 1300);
INSERT INTO pa_skill (pa_id, skill, expires_on) VALUES
  (1, 'Personal Care', NULL), (1, 'Hoist', '2027-01-01'), (1, 'hoisting', '2028-01-01'),
  (2, 'meds', '2027-05-01'), (2, 'Medication', '2026-01-01'), (2, 'Mobility', NULL),
  (2, 'Basket weaving', NULL), (2, 'personal-care', '2027-02-02');
INSERT INTO service_user_profile (member_id, funding, needs) VALUES
  (3, 'SELF_FUNDED', ARRAY[' personal care', 'Parkinson''s', 'Basket Weaving', 'LD', '']);
INSERT INTO cluster (name, kind, la_code, status, need_tags)
  VALUES ('Neuro', 'NEED_BASED', 'E09000003', 'ACTIVE', ARRAY['MS', 'Neurological']);
INSERT INTO referral (la_code, postcode_district, needs, hours_per_week, referred_on, status)
  VALUES ('E09000003', 'N12', ARRAY['Personal care', 'End of life care', 'घर'], 5,
          '2026-01-01', 'WAITING');
"""


def _before_0018() -> str:
    script = ScriptDirectory.from_config(alembic_config("postgresql://unused"))
    revision = script.get_revision("0018")
    assert revision is not None and isinstance(revision.down_revision, str)
    return revision.down_revision


@pytest.fixture
def before(database_url: str) -> Iterator[str]:
    name = f"coopnet_mig_{uuid.uuid4().hex[:8]}"
    admin = make_url(database_url)
    _in_thread(asyncio.run, _run(database_url, f'CREATE DATABASE "{name}"', autocommit=True))
    url = admin.set(database=name).render_as_string(hide_password=False)
    _in_thread(upgrade, url, _before_0018())
    yield url
    _in_thread(
        asyncio.run, _run(database_url, f'DROP DATABASE "{name}" WITH (FORCE)', autocommit=True)
    )


def test_free_text_is_mapped_and_the_unmapped_kept_for_review(
    before: str, caplog: pytest.LogCaptureFixture
) -> None:
    _sql(before, DATA)
    with caplog.at_level(logging.WARNING, logger="alembic.runtime.migration"):
        _in_thread(upgrade, before, "0018")

    skills = _sql(before, "SELECT pa_id, skill, expires_on::text FROM pa_skill ORDER BY 1, 2")
    assert skills == [
        (1, "hoist", "2028-01-01"),  # Hoist and hoisting: the later expiry
        (1, "personal-care", None),
        (2, "basket-weaving", None),
        (2, "medication-support", "2027-05-01"),
        (2, "moving-and-handling", None),
        (2, "personal-care", "2027-02-02"),  # already a code: untouched
    ]
    assert _sql(before, "SELECT needs FROM service_user_profile") == [
        (["basket-weaving", "learning-disability", "parkinsons", "personal-care"],)
    ]
    assert _sql(before, "SELECT need_tags FROM cluster") == [
        (["multiple-sclerosis", "neurological-conditions"],)
    ]
    [(needs,)] = _sql(before, "SELECT needs FROM referral")
    assert isinstance(needs, list) and len(needs) == 3
    assert needs[:2] == ["end-of-life", "personal-care"]
    made_up = needs[2]
    assert made_up.startswith("unreviewed-")

    review = _sql(
        before,
        "SELECT code, label, active, kind, description FROM care_term WHERE needs_review"
        " ORDER BY code",
    )
    assert [r[0] for r in review] == ["basket-weaving", made_up]
    weaving = review[0]
    assert weaving[1] in ("Basket weaving", "Basket Weaving") and weaving[2:4] == (False, "NEED")
    assert "'Basket weaving'" in str(weaving[4]) and "'Basket Weaving'" in str(weaving[4])
    assert review[1][1] == "घर"
    # Reported: the codes and the values they came from.
    report = " ".join(r.getMessage() for r in caplog.records)
    assert "basket-weaving <- " in report and "'Basket weaving'" in report and made_up in report
    # Seeded terms are active and not for review.
    assert _sql(before, "SELECT count(*) FROM care_term WHERE NOT needs_review AND NOT active") == [
        (0,)
    ]

    # From now on unknown codes are refused, by foreign key and by trigger.
    with pytest.raises(Exception, match="fk_pa_skill_skill_care_term"):
        _sql(before, "INSERT INTO pa_skill (pa_id, skill) VALUES (1, 'Dementia')")
    with pytest.raises(Exception, match="unknown care terms in service_user_profile.needs"):
        _sql(before, "UPDATE service_user_profile SET needs = '{dementia,Dementia}'")
    _sql(before, "UPDATE service_user_profile SET needs = '{dementia}'")

    # The downgrade drops the vocabulary and its rules; the codes stay.
    _in_thread(downgrade, before, _before_0018())
    assert _sql(before, "SELECT to_regclass('care_term') IS NULL") == [(True,)]
    assert _sql(
        before,
        "SELECT count(*) FROM pg_proc WHERE proname IN ('care_terms_known', 'care_term_in_use')",
    ) == [(0,)]
    _sql(before, "INSERT INTO pa_skill (pa_id, skill) VALUES (1, 'Dementia')")
    assert _sql(before, "SELECT needs FROM service_user_profile") == [(["dementia"],)]


def test_an_empty_database_gets_the_seeded_vocabulary_only(before: str) -> None:
    _in_thread(upgrade, before, "0018")
    rows = _sql(before, "SELECT count(*), count(*) FILTER (WHERE kind = 'SKILL') FROM care_term")
    assert rows == [(25, 3)]
    assert _sql(before, "SELECT count(*) FROM care_term WHERE needs_review OR NOT active") == [(0,)]
