"""A member is one kind (migration 0025): a service user's profile belongs to a
SERVICE_USER member and a PA's to a WORKER, so no member holds both, and a member's class
cannot change while a profile says otherwise. The database holds it, whoever writes."""

from __future__ import annotations

import pytest
from sqlalchemy import text
from sqlalchemy.exc import IntegrityError
from sqlalchemy.ext.asyncio import AsyncSession

from tests.factories import Build

ADD_PA = "INSERT INTO pa_profile (member_id, hourly_pay_pence) VALUES (:id, 1300)"
ADD_SERVICE_USER = (
    "INSERT INTO service_user_profile (member_id, funding) VALUES (:id, 'DIRECT_PAYMENT')"
)


async def _refused(db: AsyncSession, sql: str, member_id: int, constraint: str) -> None:
    with pytest.raises(IntegrityError) as refused:
        await db.execute(text(sql), {"id": member_id})
    assert constraint in str(refused.value)
    await db.rollback()


async def test_a_profile_belongs_to_a_member_of_its_class(db: AsyncSession) -> None:
    b = Build(db)
    await b.las()
    await b.coop()
    ada = (await b.service_user("Ada User")).id
    pat = (await b.pa("Pat PA")).id
    sam = (await b.worker("Sam Support")).id
    await db.commit()
    # A service user cannot also be a PA, nor a PA a service user.
    await _refused(db, ADD_PA, ada, "fk_pa_profile_member_class")
    await _refused(db, ADD_SERVICE_USER, pat, "fk_service_user_profile_member_class")
    # A worker without a profile (a support worker) may become a PA, not a service user.
    await _refused(db, ADD_SERVICE_USER, sam, "fk_service_user_profile_member_class")
    await db.execute(text(ADD_PA), {"id": sam})
    await db.commit()
    kinds = (
        await db.execute(
            text(
                "SELECT m.id, s.member_id IS NOT NULL, p.member_id IS NOT NULL FROM member m "
                "LEFT JOIN service_user_profile s ON s.member_id = m.id "
                "LEFT JOIN pa_profile p ON p.member_id = m.id WHERE m.id = ANY(:ids) ORDER BY 1"
            ),
            {"ids": [ada, pat, sam]},
        )
    ).all()
    assert [tuple(k) for k in kinds] == [(ada, True, False), (pat, False, True), (sam, False, True)]


async def test_a_member_keeps_their_class_while_they_hold_a_profile(db: AsyncSession) -> None:
    b = Build(db)
    await b.las()
    await b.coop()
    ada = (await b.service_user("Ada User")).id
    pat = (await b.pa("Pat PA")).id
    await db.commit()
    for member_id, other in ((ada, "WORKER"), (pat, "SERVICE_USER")):
        with pytest.raises(IntegrityError) as refused:
            await db.execute(
                text("UPDATE member SET membership_class = :c WHERE id = :id"),
                {"c": other, "id": member_id},
            )
        assert "_member_class" in str(refused.value)
        await db.rollback()
    # A profile's own class is fixed too.
    with pytest.raises(IntegrityError) as refused:
        await db.execute(
            text("UPDATE pa_profile SET membership_class = 'SERVICE_USER' WHERE member_id = :id"),
            {"id": pat},
        )
    assert "ck_pa_profile_class_fixed" in str(refused.value)
