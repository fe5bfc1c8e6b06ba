"""SQLAlchemy models of the co-op's data.

Relationships are not declared: every read goes through explicit, set-based queries in
`care/queries.py` (guarded by the predicates in `care/policy.py`), so nothing loads by
accident and no query count grows with the size of a result.
"""

from __future__ import annotations

import datetime as dt
import secrets
import uuid
from decimal import Decimal
from enum import StrEnum
from typing import Any

from sqlalchemy import (
    BigInteger,
    Boolean,
    CheckConstraint,
    Date,
    DateTime,
    FetchedValue,
    ForeignKey,
    ForeignKeyConstraint,
    Index,
    Integer,
    LargeBinary,
    Numeric,
    String,
    Text,
    UniqueConstraint,
    func,
    text,
)
from sqlalchemy.dialects.postgresql import (
    ARRAY,
    JSONB,
    TSTZRANGE,
    UUID,
    ExcludeConstraint,
    Range,
)
from sqlalchemy.dialects.postgresql.base import ischema_names
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column
from sqlalchemy.types import UserDefinedType

from care.enums import (
    AbsenceKind,
    CareTermKind,
    ClusterKind,
    ClusterStatus,
    CommitmentKind,
    CoopKind,
    CoverChangeKind,
    CoverOfferStatus,
    CoverReason,
    CoverRequestStatus,
    CqcStatus,
    ExchangeSide,
    ExchangeStatus,
    Funding,
    LiveSubject,
    MembershipClass,
    PartnershipDirection,
    PartnershipStatus,
    ReferralStatus,
    SignatureRefusal,
    VisitStatus,
)

NAMING = {
    "ix": "ix_%(column_0_label)s",
    "uq": "uq_%(table_name)s_%(column_0_name)s",
    "ck": "ck_%(table_name)s_%(constraint_name)s",
    "fk": "fk_%(table_name)s_%(column_0_name)s_%(referred_table_name)s",
    "pk": "pk_%(table_name)s",
}

GSS_CODE_PATTERN = "^E(06|08|09|10)[0-9]{6}$"
# A postcode district (outward code), normalised: the shape care.geography accepts.
REFERRAL_DISTRICT_PATTERN = "[A-Z]{1,2}[0-9][0-9A-Z]?"
MAX_REFERRAL_HOURS = 168  # hours in a week
# A care term's code (care/vocabulary.py): lower-case words joined by single hyphens.
CARE_TERM_CODE_PATTERN = "^[a-z0-9]+(-[a-z0-9]+)*$"


# Bounds of registered GraphQL documents (persisted_operation; migration 0019).
PERSISTED_DOCUMENT_MAX_CHARS = 100_000
PERSISTED_CLIENT_MAX_CHARS = 200


class Base(DeclarativeBase):
    pass


Base.metadata.naming_convention = NAMING  # type: ignore[assignment]


def enum_check(column: str, enum: type[StrEnum]) -> CheckConstraint:
    values = ", ".join(f"'{v.value}'" for v in enum)
    return CheckConstraint(f"{column} IN ({values})", name=f"{column}_valid")


def _of_class(membership_class: MembershipClass, table: str) -> tuple[Any, ...]:
    """A profile held only by a member of one class: its class column is that constant,
    and (member_id, membership_class) refers to the member's own pair, so no member has
    two kinds of profile nor changes class under one (migration 0025)."""
    return (
        CheckConstraint(f"membership_class = '{membership_class.value}'", name="class_fixed"),
        ForeignKeyConstraint(
            ["member_id", "membership_class"],
            ["member.id", "member.membership_class"],
            name=f"fk_{table}_member_class",
            ondelete="CASCADE",
        ),
    )


def valid_range_check(column: str) -> CheckConstraint:
    # A finite range whose end is after its start: tstzrange alone accepts '(,)' and 'empty'.
    return CheckConstraint(
        f"NOT isempty({column}) AND NOT lower_inf({column}) AND NOT upper_inf({column})",
        name=f"{column}_bounded",
    )


class LocalAuthority(Base):
    __tablename__ = "local_authority"
    __table_args__ = (CheckConstraint(f"gss_code ~ '{GSS_CODE_PATTERN}'", name="gss_code_valid"),)

    gss_code: Mapped[str] = mapped_column(String(9), primary_key=True)
    name: Mapped[str] = mapped_column(Text)


class LocalAuthorityNeighbour(Base):
    """One row per unordered pair (stored with a < b); queries read it both ways."""

    __tablename__ = "local_authority_neighbour"
    __table_args__ = (CheckConstraint("la_a < la_b", name="ordered_pair"),)

    la_a: Mapped[str] = mapped_column(
        ForeignKey("local_authority.gss_code", ondelete="CASCADE"), primary_key=True
    )
    la_b: Mapped[str] = mapped_column(
        ForeignKey("local_authority.gss_code", ondelete="CASCADE"), primary_key=True, index=True
    )


class Coop(Base):
    """The co-op this instance serves: exactly one row."""

    __tablename__ = "coop"
    __table_args__ = (
        CheckConstraint("id = 1", name="single_row"),
        enum_check("kind", CoopKind),
        CheckConstraint(
            "max_weekly_hours <> 'NaN' AND min_daily_rest_hours <> 'NaN'", name="rules_a_number"
        ),
        enum_check("cqc_status", CqcStatus),
    )

    id: Mapped[int] = mapped_column(Integer, primary_key=True, default=1)
    name: Mapped[str] = mapped_column(Text)
    kind: Mapped[str] = mapped_column(String(32))
    society_number: Mapped[str | None] = mapped_column(Text)
    cqc_provider_id: Mapped[str | None] = mapped_column(Text)
    cqc_status: Mapped[str] = mapped_column(String(32), default=CqcStatus.NOT_REGISTERED.value)
    home_la_code: Mapped[str] = mapped_column(ForeignKey("local_authority.gss_code"))
    description: Mapped[str | None] = mapped_column(Text)
    # Cover rules, per co-op (see docs/cover.md).
    dbs_valid_months: Mapped[int] = mapped_column(Integer, server_default="36")
    max_weekly_hours: Mapped[Decimal] = mapped_column(Numeric(5, 2), server_default="48")
    min_daily_rest_hours: Mapped[Decimal] = mapped_column(Numeric(4, 2), server_default="11")
    cover_offer_ttl_minutes: Mapped[int] = mapped_column(Integer, server_default="120")
    cover_weights: Mapped[dict[str, float]] = mapped_column(
        JSONB, server_default=text("'{}'::jsonb")
    )


class Member(Base):
    __tablename__ = "member"
    __table_args__ = (
        enum_check("membership_class", MembershipClass),
        CheckConstraint("latitude BETWEEN -90 AND 90", name="latitude_range"),
        CheckConstraint("longitude BETWEEN -180 AND 180", name="longitude_range"),
        CheckConstraint("(latitude IS NULL) = (longitude IS NULL)", name="location_complete"),
        CheckConstraint("length(trim(name)) > 0", name="name_present"),
        # `members(nameContains:)` is an ILIKE '%...%' search: trigrams serve it.
        Index(
            "ix_member_name_trgm",
            "name",
            postgresql_using="gin",
            postgresql_ops={"name": "gin_trgm_ops"},
        ),
        # `members(orderBy: NAME_ASC | NAME_DESC)`: keyset pages by name, id (migration 0021).
        Index("ix_member_name_id", "name", "id"),
        # What the profiles' (member_id, membership_class) keys refer to (migration 0025).
        UniqueConstraint("id", "membership_class", name="uq_member_id_class"),
    )

    id: Mapped[int] = mapped_column(BigInteger, primary_key=True, autoincrement=True)
    name: Mapped[str] = mapped_column(Text)
    email: Mapped[str | None] = mapped_column(Text)
    phone: Mapped[str | None] = mapped_column(Text)
    postcode: Mapped[str | None] = mapped_column(Text)
    latitude: Mapped[float | None] = mapped_column()
    longitude: Mapped[float | None] = mapped_column()
    membership_class: Mapped[str] = mapped_column(String(16), index=True)
    joined_on: Mapped[dt.date] = mapped_column(Date, server_default=func.current_date())
    active: Mapped[bool] = mapped_column(Boolean, server_default=text("true"))
    created_at: Mapped[dt.datetime] = mapped_column(
        DateTime(timezone=True), server_default=func.now()
    )
    # Tokens issued at or before this instant are refused (`coopnet token revoke --member`;
    # set by a trigger when the member is deactivated, so re-activation revives none).
    tokens_valid_after: Mapped[dt.datetime | None] = mapped_column(DateTime(timezone=True))
    # The London date the member was last deactivated (leavers, for market figures); set
    # and cleared by a trigger on `active` (migration 0015), so no code path forgets it.
    left_on: Mapped[dt.date | None] = mapped_column(Date)


class ServiceUserProfile(Base):
    __tablename__ = "service_user_profile"
    __table_args__ = (
        enum_check("funding", Funding),
        CheckConstraint("planned_weekly_hours >= 0", name="hours_non_negative"),
        # numeric holds NaN, which sorts above every number: `>= 0` lets it through.
        CheckConstraint("planned_weekly_hours <> 'NaN'", name="hours_a_number"),
        *_of_class(MembershipClass.SERVICE_USER, "service_user_profile"),
    )

    member_id: Mapped[int] = mapped_column(
        ForeignKey("member.id", ondelete="CASCADE"), primary_key=True
    )
    # Always SERVICE_USER: with the key above, a service user's profile is only ever a
    # SERVICE_USER member's (migration 0025).
    membership_class: Mapped[str] = mapped_column(
        String(16), server_default=MembershipClass.SERVICE_USER.value
    )
    funding: Mapped[str] = mapped_column(String(24))
    needs: Mapped[list[str]] = mapped_column(ARRAY(Text), server_default=text("'{}'"))
    planned_weekly_hours: Mapped[Decimal] = mapped_column(Numeric(5, 2), server_default="0")


class CarerLink(Base):
    __tablename__ = "carer_link"

    carer_id: Mapped[int] = mapped_column(
        ForeignKey("member.id", ondelete="CASCADE"), primary_key=True
    )
    service_user_id: Mapped[int] = mapped_column(
        ForeignKey("service_user_profile.member_id", ondelete="CASCADE"),
        primary_key=True,
        index=True,
    )
    relationship: Mapped[str | None] = mapped_column(Text)


class PaProfile(Base):
    """A personal assistant. Their home location is the member's latitude/longitude."""

    __tablename__ = "pa_profile"
    __table_args__ = (
        CheckConstraint("contracted_weekly_hours >= 0", name="hours_non_negative"),
        CheckConstraint("hourly_pay_pence > 0", name="pay_positive"),
        CheckConstraint("max_travel_km >= 0", name="travel_non_negative"),
        CheckConstraint(
            "contracted_weekly_hours <> 'NaN' AND max_travel_km <> 'NaN'", name="a_number"
        ),
        *_of_class(MembershipClass.WORKER, "pa_profile"),
    )

    member_id: Mapped[int] = mapped_column(
        ForeignKey("member.id", ondelete="CASCADE"), primary_key=True
    )
    # Always WORKER: a PA's profile is only ever a WORKER member's (migration 0025).
    membership_class: Mapped[str] = mapped_column(
        String(16), server_default=MembershipClass.WORKER.value
    )
    dbs_checked_on: Mapped[dt.date | None] = mapped_column(Date)
    contracted_weekly_hours: Mapped[Decimal] = mapped_column(Numeric(5, 2), server_default="0")
    hourly_pay_pence: Mapped[int] = mapped_column(Integer)
    max_travel_km: Mapped[Decimal] = mapped_column(Numeric(6, 2), server_default="10")
    working_time_opt_out: Mapped[bool] = mapped_column(Boolean, server_default=text("false"))


class PaPayRate(Base):
    """A PA's hourly pay from a date: the history of `pa_profile.hourly_pay_pence`, one row
    per London day it was set (a trigger on pa_profile writes it, migration 0015), so a
    report for a past period uses the pay of that period. Personal data: admins and the
    PA only."""

    __tablename__ = "pa_pay_rate"
    __table_args__ = (
        CheckConstraint("hourly_pay_pence > 0", name="pay_positive"),
        CheckConstraint("hourly_pay_pence <= 100000", name="pay_bounded"),
    )

    pa_id: Mapped[int] = mapped_column(
        ForeignKey("pa_profile.member_id", ondelete="CASCADE"), primary_key=True
    )
    effective_from: Mapped[dt.date] = mapped_column(Date, primary_key=True)
    hourly_pay_pence: Mapped[int] = mapped_column(Integer)
    recorded_at: Mapped[dt.datetime] = mapped_column(
        DateTime(timezone=True), server_default=func.now()
    )


class CareTerm(Base):
    """One term of the co-op's care vocabulary (care/vocabulary.py, migration 0018): the
    codes PA skills, service users' needs, cluster need tags and referrals' needs are
    written in. PA skills reference it by foreign key; the arrays of needs are checked by
    a trigger (`care_terms_known`). Terms are deactivated, not deleted, once used."""

    __tablename__ = "care_term"
    __table_args__ = (
        CheckConstraint(
            f"code ~ '{CARE_TERM_CODE_PATTERN}' AND length(code) <= 100", name="code_format"
        ),
        enum_check("kind", CareTermKind),
        CheckConstraint("length(trim(label)) > 0 AND length(label) <= 200", name="label_length"),
        CheckConstraint("length(description) <= 2000", name="description_length"),
    )

    code: Mapped[str] = mapped_column(Text, primary_key=True)
    label: Mapped[str] = mapped_column(Text)
    description: Mapped[str] = mapped_column(Text, server_default="")
    kind: Mapped[str] = mapped_column(String(16))
    active: Mapped[bool] = mapped_column(Boolean, server_default=text("true"))
    # Added by migration 0018 from free text it could not map: the co-op should describe
    # it and activate it, or replace it with an existing term.
    needs_review: Mapped[bool] = mapped_column(Boolean, server_default=text("false"))
    updated_at: Mapped[dt.datetime] = mapped_column(
        DateTime(timezone=True), server_default=func.now()
    )


class PaSkill(Base):
    __tablename__ = "pa_skill"
    __table_args__ = (CheckConstraint("length(trim(skill)) > 0", name="skill_present"),)

    pa_id: Mapped[int] = mapped_column(
        ForeignKey("pa_profile.member_id", ondelete="CASCADE"), primary_key=True
    )
    # A care term's code: deactivating a term keeps it; deleting one in use is refused.
    skill: Mapped[str] = mapped_column(ForeignKey("care_term.code"), primary_key=True)
    expires_on: Mapped[dt.date | None] = mapped_column(Date)


class RegularPa(Base):
    """A PA the service user knows and prefers ("named regular PA")."""

    __tablename__ = "regular_pa"

    service_user_id: Mapped[int] = mapped_column(
        ForeignKey("service_user_profile.member_id", ondelete="CASCADE"), primary_key=True
    )
    pa_id: Mapped[int] = mapped_column(
        ForeignKey("pa_profile.member_id", ondelete="CASCADE"), primary_key=True, index=True
    )


class Cluster(Base):
    __tablename__ = "cluster"
    __table_args__ = (
        enum_check("kind", ClusterKind),
        enum_check("status", ClusterStatus),
        CheckConstraint(
            "kind <> 'GEOGRAPHIC' OR (centre_latitude IS NOT NULL AND radius_km > 0)"
            " OR cardinality(postcode_districts) > 0",
            name="geographic_has_area",
        ),
        CheckConstraint(
            "kind <> 'NEED_BASED' OR cardinality(need_tags) > 0", name="need_based_has_needs"
        ),
        CheckConstraint(
            "(centre_latitude IS NULL) = (centre_longitude IS NULL)", name="centre_complete"
        ),
        # As a member's location; the ranges also keep out NaN and infinities.
        CheckConstraint("centre_latitude BETWEEN -90 AND 90", name="centre_latitude_range"),
        CheckConstraint("centre_longitude BETWEEN -180 AND 180", name="centre_longitude_range"),
        CheckConstraint("radius_km <> 'NaN'", name="radius_a_number"),
        CheckConstraint("length(trim(name)) > 0", name="name_present"),
        Index("ix_cluster_la_kind", "la_code", "kind"),
    )

    id: Mapped[int] = mapped_column(BigInteger, primary_key=True, autoincrement=True)
    name: Mapped[str] = mapped_column(Text)
    kind: Mapped[str] = mapped_column(String(16))
    la_code: Mapped[str] = mapped_column(ForeignKey("local_authority.gss_code"))
    support_worker_id: Mapped[int | None] = mapped_column(
        ForeignKey("member.id", ondelete="SET NULL"), index=True
    )
    status: Mapped[str] = mapped_column(String(16), server_default=ClusterStatus.PLANNED.value)
    centre_latitude: Mapped[float | None] = mapped_column()
    centre_longitude: Mapped[float | None] = mapped_column()
    radius_km: Mapped[Decimal | None] = mapped_column(Numeric(6, 2))
    postcode_districts: Mapped[list[str]] = mapped_column(ARRAY(Text), server_default=text("'{}'"))
    need_tags: Mapped[list[str]] = mapped_column(ARRAY(Text), server_default=text("'{}'"))
    created_at: Mapped[dt.datetime] = mapped_column(
        DateTime(timezone=True), server_default=func.now()
    )
    closed_at: Mapped[dt.datetime | None] = mapped_column(DateTime(timezone=True))


class ClusterServiceUser(Base):
    __tablename__ = "cluster_service_user"

    cluster_id: Mapped[int] = mapped_column(
        ForeignKey("cluster.id", ondelete="CASCADE"), primary_key=True
    )
    service_user_id: Mapped[int] = mapped_column(
        ForeignKey("service_user_profile.member_id", ondelete="CASCADE"),
        primary_key=True,
        index=True,
    )


class ClusterPa(Base):
    __tablename__ = "cluster_pa"

    cluster_id: Mapped[int] = mapped_column(
        ForeignKey("cluster.id", ondelete="CASCADE"), primary_key=True
    )
    pa_id: Mapped[int] = mapped_column(
        ForeignKey("pa_profile.member_id", ondelete="CASCADE"), primary_key=True, index=True
    )


class Pool(Base):
    __tablename__ = "pool"
    __table_args__ = (CheckConstraint("length(trim(name)) > 0", name="name_present"),)

    id: Mapped[int] = mapped_column(BigInteger, primary_key=True, autoincrement=True)
    name: Mapped[str] = mapped_column(Text, unique=True)
    shared_with_partners: Mapped[bool] = mapped_column(Boolean, server_default=text("false"))


class PoolPa(Base):
    __tablename__ = "pool_pa"

    pool_id: Mapped[int] = mapped_column(
        ForeignKey("pool.id", ondelete="CASCADE"), primary_key=True
    )
    pa_id: Mapped[int] = mapped_column(
        ForeignKey("pa_profile.member_id", ondelete="CASCADE"), primary_key=True, index=True
    )


class PoolCluster(Base):
    __tablename__ = "pool_cluster"

    pool_id: Mapped[int] = mapped_column(
        ForeignKey("pool.id", ondelete="CASCADE"), primary_key=True
    )
    cluster_id: Mapped[int] = mapped_column(
        ForeignKey("cluster.id", ondelete="CASCADE"), primary_key=True, index=True
    )


class WeeklyAvailability(Base):
    """A PA's recurring free time (local wall-clock times in Europe/London).

    Design: patterns are expanded into concrete `AvailabilityWindow` rows over a rolling
    horizon when they are set (and topped up at start), so every availability query works
    on plain ranges with a GiST index and never re-derives recurrences.
    """

    __tablename__ = "weekly_availability"
    __table_args__ = (
        CheckConstraint("weekday BETWEEN 1 AND 7", name="weekday_iso"),
        CheckConstraint("end_time > start_time", name="end_after_start"),
    )

    id: Mapped[int] = mapped_column(BigInteger, primary_key=True, autoincrement=True)
    pa_id: Mapped[int] = mapped_column(
        ForeignKey("pa_profile.member_id", ondelete="CASCADE"), index=True
    )
    weekday: Mapped[int] = mapped_column(Integer)  # ISO: 1 = Monday
    start_time: Mapped[dt.time] = mapped_column()
    end_time: Mapped[dt.time] = mapped_column()
    valid_from: Mapped[dt.date] = mapped_column(Date)
    valid_until: Mapped[dt.date | None] = mapped_column(Date)
    # The last local date already expanded into windows (None: not yet).
    expanded_through: Mapped[dt.date | None] = mapped_column(Date)


class AvailabilityWindow(Base):
    __tablename__ = "availability_window"
    __table_args__ = (
        valid_range_check("during"),
        ExcludeConstraint(
            (text("pa_id"), "="),
            (text("during"), "&&"),
            name="availability_no_overlap",
            using="gist",
        ),
        # Windows containing a visit, for the candidate search (migration 0003).
        Index(
            "ix_availability_window_during",
            "during",
            postgresql_using="spgist",
            postgresql_include=["pa_id"],
        ),
    )

    id: Mapped[int] = mapped_column(BigInteger, primary_key=True, autoincrement=True)
    pa_id: Mapped[int] = mapped_column(ForeignKey("pa_profile.member_id", ondelete="CASCADE"))
    during: Mapped[Range[dt.datetime]] = mapped_column(TSTZRANGE)
    weekly_availability_id: Mapped[int | None] = mapped_column(
        ForeignKey("weekly_availability.id", ondelete="CASCADE"), index=True
    )


class Xid8(UserDefinedType[int]):
    """PostgreSQL's 64-bit transaction id (`xid8`), read as an int."""

    cache_ok = True

    def get_col_spec(self, **kw: object) -> str:
        return "xid8"


ischema_names["xid8"] = Xid8  # so reflection (autogenerate) knows the type


class AvailabilityFeed(Base):
    """The availability feed's change log (migration 0012): one row per availability
    window that ever changed in a way a partner could see, moved by triggers to the
    writing transaction's id and a fresh `seq` on every such change. No foreign key: the
    row outlives its window, to carry the tombstone. The feed serves rows in (xid, seq)
    order below the oldest running transaction (docs/federation.md, section 9)."""

    __tablename__ = "availability_feed"
    __table_args__ = (Index("ix_availability_feed_xid_seq", "xid", "seq"),)

    window_id: Mapped[int] = mapped_column(BigInteger, primary_key=True, autoincrement=False)
    pa_id: Mapped[int] = mapped_column(BigInteger)
    xid: Mapped[int] = mapped_column(Xid8, server_default=text("pg_current_xact_id()"))
    seq: Mapped[int] = mapped_column(
        BigInteger, server_default=text("nextval('availability_feed_seq')")
    )


# The longest a visit may last (migration 0022 checks it; services refuse longer ones).
MAX_VISIT_HOURS = 24
MAX_VISIT_LENGTH = dt.timedelta(hours=MAX_VISIT_HOURS)


class Visit(Base):
    __tablename__ = "visit"
    __table_args__ = (
        valid_range_check("during"),
        enum_check("status", VisitStatus),
        CheckConstraint("status <> 'NEEDS_COVER' OR pa_id IS NULL", name="needs_cover_unassigned"),
        # Queries rely on it: a visit under way at T began after T - MAX_VISIT_LENGTH.
        CheckConstraint(
            f"upper(during) - lower(during) <= interval '{MAX_VISIT_HOURS} hours'",
            name="within_a_day",
        ),
        CheckConstraint(
            "(confirmed_at IS NULL) = (confirmed_by_id IS NULL)", name="confirmation_complete"
        ),
        # The last guard against double-booking a PA, whatever the application does.
        ExcludeConstraint(
            (text("pa_id"), "="),
            (text("during"), "&&"),
            name="visit_pa_no_overlap",
            using="gist",
            where=text("pa_id IS NOT NULL AND status IN ('SCHEDULED', 'COMPLETED')"),
        ),
        Index("ix_visit_service_user_during", "service_user_id", "during", postgresql_using="gist"),
        Index("ix_visit_status", "status"),
        Index("ix_visit_pa_id", "pa_id"),
        Index("ix_visit_during", "during", postgresql_using="gist"),
        # Visits needing cover by start: the market report's unmet hours of this month.
        Index(
            "ix_visit_needing_cover_start",
            text("lower(during)"),
            postgresql_where=text("status = 'NEEDS_COVER'"),
        ),
        # `visits` pages by start, id, either way (`orderBy`; migration 0021).
        Index("ix_visit_start_id", text("lower(during)"), "id"),
        # A PA's active visits by time, read per candidate (migration 0003).
        Index(
            "ix_visit_pa_active_during",
            "pa_id",
            "during",
            postgresql_where=text("pa_id IS NOT NULL AND status IN ('SCHEDULED', 'COMPLETED')"),
        ),
    )

    id: Mapped[int] = mapped_column(BigInteger, primary_key=True, autoincrement=True)
    service_user_id: Mapped[int] = mapped_column(
        ForeignKey("service_user_profile.member_id", ondelete="CASCADE")
    )
    pa_id: Mapped[int | None] = mapped_column(
        ForeignKey("pa_profile.member_id", ondelete="SET NULL")
    )
    during: Mapped[Range[dt.datetime]] = mapped_column(TSTZRANGE)
    tasks: Mapped[list[str]] = mapped_column(ARRAY(Text), server_default=text("'{}'"))
    status: Mapped[str] = mapped_column(String(16), server_default=VisitStatus.SCHEDULED.value)
    series_id: Mapped[str | None] = mapped_column(String(36), index=True)
    confirmed_by_id: Mapped[int | None] = mapped_column(ForeignKey("member.id"))
    confirmed_at: Mapped[dt.datetime | None] = mapped_column(DateTime(timezone=True))
    checked_in_at: Mapped[dt.datetime | None] = mapped_column(DateTime(timezone=True))
    cancel_reason: Mapped[str | None] = mapped_column(Text)
    created_at: Mapped[dt.datetime] = mapped_column(
        DateTime(timezone=True), server_default=func.now()
    )


class VisitMonth(Base):
    """Visits rolled up per London calendar month, person and PA (`pa_id` 0: no PA), kept
    by statement triggers on `visit` (migration 0016) whatever code writes visits, so the
    market report reads a few rows per person and month instead of every visit. Durations
    in seconds; a visit counts in the month its start falls in. Not exposed to any caller:
    it is read only to compute disclosure-controlled aggregates (care/market.py)."""

    __tablename__ = "visit_month"
    # No check that totals stay non-negative: PostgreSQL checks an upsert's proposed row
    # before it finds the conflict, so a subtraction from an existing row would fail it.
    # tests/care/test_visit_month.py recounts the table against the visits instead.
    __table_args__ = (CheckConstraint("extract(day FROM month) = 1", name="month_starts"),)

    # Person first in the key: the report reads a local authority's people, each over a
    # range of months. No foreign keys: a person's visits are deleted by cascade, and the
    # trigger then writes the subtraction for rows of a person that no longer exists.
    service_user_id: Mapped[int] = mapped_column(BigInteger, primary_key=True)
    month: Mapped[dt.date] = mapped_column(Date, primary_key=True)
    pa_id: Mapped[int] = mapped_column(BigInteger, primary_key=True)
    visits_planned: Mapped[int] = mapped_column(Integer, server_default=text("0"))
    visits_delivered: Mapped[int] = mapped_column(Integer, server_default=text("0"))
    seconds_planned: Mapped[int] = mapped_column(BigInteger, server_default=text("0"))
    seconds_delivered: Mapped[int] = mapped_column(BigInteger, server_default=text("0"))
    seconds_missed: Mapped[int] = mapped_column(BigInteger, server_default=text("0"))
    seconds_cancelled: Mapped[int] = mapped_column(BigInteger, server_default=text("0"))
    seconds_needing_cover: Mapped[int] = mapped_column(BigInteger, server_default=text("0"))


class Absence(Base):
    """A PA's holiday, sickness or training. Active absences of one PA never overlap."""

    __tablename__ = "absence"
    __table_args__ = (
        valid_range_check("during"),
        enum_check("kind", AbsenceKind),
        ExcludeConstraint(
            (text("pa_id"), "="),
            (text("during"), "&&"),
            name="absence_no_overlap",
            using="gist",
            where=text("cancelled_at IS NULL"),
        ),
    )

    id: Mapped[int] = mapped_column(BigInteger, primary_key=True, autoincrement=True)
    pa_id: Mapped[int] = mapped_column(
        ForeignKey("pa_profile.member_id", ondelete="CASCADE"), index=True
    )
    kind: Mapped[str] = mapped_column(String(16))
    during: Mapped[Range[dt.datetime]] = mapped_column(TSTZRANGE)
    note: Mapped[str | None] = mapped_column(Text)
    recorded_by_id: Mapped[int | None] = mapped_column(ForeignKey("member.id"))
    created_at: Mapped[dt.datetime] = mapped_column(
        DateTime(timezone=True), server_default=func.now()
    )
    cancelled_at: Mapped[dt.datetime | None] = mapped_column(DateTime(timezone=True))


# The one guard on a PA's time (see PaCommitment).
PA_COMMITMENT_GUARD = "pa_commitment_no_overlap"


class PaCommitment(Base):
    """One stretch of a PA's time that something holds: an active visit (SCHEDULED or
    COMPLETED, with this PA), an active absence, or a hold for a partner co-op (a live
    PROVIDING cover exchange: held, accepted or confirmed). Rows are written only by the
    triggers on `visit`, `absence` (migration 0006) and `cover_exchange` (0014), so no
    code path can forget them; one exclusion constraint keeps every PA's commitments
    apart."""

    __tablename__ = "pa_commitment"
    __table_args__ = (
        valid_range_check("during"),
        enum_check("kind", CommitmentKind),
        # Exactly one source, of the row's kind.
        CheckConstraint(
            "num_nonnulls(visit_id, absence_id, exchange_id) = 1 "
            "AND (kind = 'VISIT') = (visit_id IS NOT NULL) "
            "AND (kind = 'ABSENCE') = (absence_id IS NOT NULL) "
            "AND (kind = 'HOLD') = (exchange_id IS NOT NULL)",
            name="one_source",
        ),
        ExcludeConstraint(
            (text("pa_id"), "="),
            (text("during"), "&&"),
            name=PA_COMMITMENT_GUARD,
            using="gist",
        ),
    )

    id: Mapped[int] = mapped_column(BigInteger, primary_key=True, autoincrement=True)
    pa_id: Mapped[int] = mapped_column(ForeignKey("pa_profile.member_id", ondelete="CASCADE"))
    during: Mapped[Range[dt.datetime]] = mapped_column(TSTZRANGE)
    kind: Mapped[str] = mapped_column(String(16))
    visit_id: Mapped[int | None] = mapped_column(
        ForeignKey("visit.id", ondelete="CASCADE"), unique=True
    )
    absence_id: Mapped[int | None] = mapped_column(
        ForeignKey("absence.id", ondelete="CASCADE"), unique=True
    )
    exchange_id: Mapped[int | None] = mapped_column(
        ForeignKey("cover_exchange.id", ondelete="CASCADE"), unique=True
    )


class CoverRequest(Base):
    """A visit that needs another PA. A NEEDS_COVER visit has exactly one OPEN request, and
    an OPEN request's visit is NEEDS_COVER: the partial unique index below allows at most
    one; deferred constraint triggers (migration 0017) open a missing one at commit (reason
    UNASSIGNED) and refuse a commit that leaves a request open on a visit no longer needing
    cover."""

    __tablename__ = "cover_request"
    __table_args__ = (
        enum_check("status", CoverRequestStatus),
        enum_check("reason", CoverReason),
        # Filled by one of our PAs, or by a partner co-op's PA (a confirmed exchange).
        CheckConstraint(
            "(status = 'FILLED') = (filled_by_pa_id IS NOT NULL OR filled_by_partner)",
            name="filled_has_pa",
        ),
        CheckConstraint("(status = 'OPEN') = (closed_at IS NULL)", name="closed_when_not_open"),
        Index(
            "uq_cover_request_open_visit",
            "visit_id",
            unique=True,
            postgresql_where=text("status = 'OPEN'"),
        ),
        Index("ix_cover_request_status_opened", "status", "opened_at"),
        # The market report's requests opened in a period, and `coverRequests(orderBy:
        # OPENED_ASC | OPENED_DESC)` pages by opened_at, id (migration 0021).
        Index("ix_cover_request_opened_at_id", "opened_at", "id"),
    )

    id: Mapped[int] = mapped_column(BigInteger, primary_key=True, autoincrement=True)
    visit_id: Mapped[int] = mapped_column(ForeignKey("visit.id", ondelete="CASCADE"), index=True)
    # The visit's person, copied by a trigger on insert (migration 0016; a visit's person
    # never changes): the market report counts requests per person without reading visits.
    service_user_id: Mapped[int] = mapped_column(BigInteger, server_default=FetchedValue())
    reason: Mapped[str] = mapped_column(String(32))
    status: Mapped[str] = mapped_column(String(16), server_default="OPEN")
    absence_id: Mapped[int | None] = mapped_column(
        ForeignKey("absence.id", ondelete="SET NULL"), index=True
    )
    original_pa_id: Mapped[int | None] = mapped_column(
        ForeignKey("pa_profile.member_id", ondelete="SET NULL")
    )
    opened_by_id: Mapped[int | None] = mapped_column(ForeignKey("member.id"))
    opened_at: Mapped[dt.datetime] = mapped_column(
        DateTime(timezone=True), server_default=func.now()
    )
    filled_by_pa_id: Mapped[int | None] = mapped_column(
        ForeignKey("pa_profile.member_id", ondelete="SET NULL"), index=True
    )
    filled_by_partner: Mapped[bool] = mapped_column(Boolean, server_default=text("false"))
    closed_at: Mapped[dt.datetime | None] = mapped_column(DateTime(timezone=True))
    note: Mapped[str | None] = mapped_column(Text)


class CoverOffer(Base):
    """A cover request offered to one PA. An open offer past `expires_at` is expired."""

    __tablename__ = "cover_offer"
    __table_args__ = (
        enum_check("status", CoverOfferStatus),
        CheckConstraint("expires_at > offered_at", name="expires_after_offered"),
        CheckConstraint(
            "(status = 'OPEN') = (responded_at IS NULL)", name="responded_when_not_open"
        ),
        Index(
            "uq_cover_offer_open_pa",
            "cover_request_id",
            "pa_id",
            unique=True,
            postgresql_where=text("status = 'OPEN'"),
        ),
        Index("ix_cover_offer_pa_status", "pa_id", "status"),
    )

    id: Mapped[int] = mapped_column(BigInteger, primary_key=True, autoincrement=True)
    cover_request_id: Mapped[int] = mapped_column(
        ForeignKey("cover_request.id", ondelete="CASCADE"), index=True
    )
    pa_id: Mapped[int] = mapped_column(ForeignKey("pa_profile.member_id", ondelete="CASCADE"))
    status: Mapped[str] = mapped_column(String(16), server_default="OPEN")
    offered_by_id: Mapped[int | None] = mapped_column(ForeignKey("member.id"))
    offered_at: Mapped[dt.datetime] = mapped_column(
        DateTime(timezone=True), server_default=func.now()
    )
    expires_at: Mapped[dt.datetime] = mapped_column(DateTime(timezone=True))
    responded_at: Mapped[dt.datetime | None] = mapped_column(DateTime(timezone=True))


class RevokedToken(Base):
    """One revoked token (by its `jti`), kept until it would have expired anyway."""

    __tablename__ = "revoked_token"

    jti: Mapped[uuid.UUID] = mapped_column(UUID(as_uuid=True), primary_key=True)
    member_id: Mapped[int | None] = mapped_column(
        ForeignKey("member.id", ondelete="CASCADE"), index=True
    )
    expires_at: Mapped[dt.datetime] = mapped_column(DateTime(timezone=True), index=True)
    revoked_at: Mapped[dt.datetime] = mapped_column(
        DateTime(timezone=True), server_default=func.now()
    )


class PersistedOperation(Base):
    """A GraphQL document a frontend registered at build time (`coopnet operations
    register`): clients then send only its hash, and an instance in trusted-documents
    mode runs nothing else. The hash is the SHA-256 of the exact text, so a row never
    changes; the CLI validates the document against the schema before storing it."""

    __tablename__ = "persisted_operation"
    __table_args__ = (
        CheckConstraint("hash ~ '^[0-9a-f]{64}$'", name="hash_is_sha256_hex"),
        CheckConstraint(
            f"length(document) BETWEEN 1 AND {PERSISTED_DOCUMENT_MAX_CHARS}",
            name="document_length",
        ),
        CheckConstraint(
            f"client IS NULL OR length(client) BETWEEN 1 AND {PERSISTED_CLIENT_MAX_CHARS}",
            name="client_length",
        ),
    )

    hash: Mapped[str] = mapped_column(Text, primary_key=True)
    document: Mapped[str] = mapped_column(Text)
    # Which frontend registered it (`--client`), for the operators: not used to decide.
    client: Mapped[str | None] = mapped_column(Text)
    registered_at: Mapped[dt.datetime] = mapped_column(
        DateTime(timezone=True), server_default=func.now()
    )


def _listed(enum: type[StrEnum]) -> str:
    return ", ".join(f"'{v.value}'" for v in enum)


# The kinds each subject's events may have (the CHECK on live_event.kind).
LIVE_EVENT_KIND_VALID = (
    f"(subject IN ('COVER_REQUEST', 'COVER_OFFER') AND kind IN ({_listed(CoverChangeKind)}))"
    f" OR (subject = 'PARTNERSHIP' AND kind IN ({_listed(PartnershipStatus)}))"
    f" OR (subject = 'COVER_EXCHANGE' AND kind IN ({_listed(ExchangeStatus)}))"
)


class LiveEvent(Base):
    """A change subscribers hear of (migration 0023; care/events.py). Written by
    `publish_all` in the changing transaction, so it exists exactly when the change
    committed; one row per subject and transaction (later mentions update it). A deferred
    trigger numbers the transaction's rows at commit (`sequence`), under a transaction
    advisory lock, so sequence order is commit order: a reader that has seen N never later
    finds a committed event below N. `sequence` is NULL only inside the writing
    transaction. Rows older than LIVE_EVENT_RETENTION_HOURS are pruned."""

    __tablename__ = "live_event"
    __table_args__ = (
        enum_check("subject", LiveSubject),
        CheckConstraint(LIVE_EVENT_KIND_VALID, name="kind_valid"),
        # Cover requests are followed by cluster, offers by PA: each carries its filter.
        CheckConstraint(
            "(subject = 'COVER_OFFER') = (pa_id IS NOT NULL)", name="pa_only_for_offers"
        ),
        CheckConstraint(
            "subject = 'COVER_REQUEST' OR cardinality(cluster_ids) = 0",
            name="clusters_only_for_requests",
        ),
        UniqueConstraint("xid", "subject", "subject_id", name="uq_live_event_xid_subject"),
        UniqueConstraint("sequence", name="uq_live_event_sequence"),
        Index("ix_live_event_occurred_at", "occurred_at"),
    )

    id: Mapped[int] = mapped_column(BigInteger, primary_key=True, autoincrement=True)
    sequence: Mapped[int | None] = mapped_column(BigInteger)
    xid: Mapped[int] = mapped_column(Xid8, server_default=text("pg_current_xact_id()"))
    subject: Mapped[str] = mapped_column(String(16))
    subject_id: Mapped[int] = mapped_column(BigInteger)
    kind: Mapped[str] = mapped_column(String(32))
    cluster_ids: Mapped[list[int]] = mapped_column(
        ARRAY(BigInteger), server_default=text("'{}'::bigint[]")
    )
    pa_id: Mapped[int | None] = mapped_column(BigInteger)
    occurred_at: Mapped[dt.datetime] = mapped_column(
        DateTime(timezone=True), server_default=func.now()
    )


# --- federation (docs/federation.md; written by federation/signatures.py) ----------------


class FederationNonce(Base):
    """A nonce of an accepted signature, kept until the signature could no longer be
    accepted: a second insert of (keyid, nonce) is a replay, in any process."""

    __tablename__ = "federation_nonce"

    keyid: Mapped[str] = mapped_column(String(200), primary_key=True)
    nonce: Mapped[str] = mapped_column(String(128), primary_key=True)
    expires_at: Mapped[dt.datetime] = mapped_column(DateTime(timezone=True), index=True)


class FederationAudit(Base):
    """One refused server-to-server message: when, from where, which key, why. Never
    the body."""

    __tablename__ = "federation_audit"
    __table_args__ = (enum_check("reason", SignatureRefusal),)

    id: Mapped[int] = mapped_column(BigInteger, primary_key=True, autoincrement=True)
    at: Mapped[dt.datetime] = mapped_column(
        DateTime(timezone=True), server_default=func.now(), index=True
    )
    remote_addr: Mapped[str | None] = mapped_column(String(64))
    keyid: Mapped[str | None] = mapped_column(String(200))
    reason: Mapped[str] = mapped_column(String(32))
    method: Mapped[str] = mapped_column(String(16))
    path: Mapped[str] = mapped_column(String(2000))


class Partnership(Base):
    """This instance's side of a partnership with another co-op's instance, known by its
    base URL. Both sides keep a row; `proposal_ref` (chosen by the proposer) names the
    partnership in the messages between them. `keys` holds the partner's public JWKs from
    its manifest, re-read when it signs with a key we do not know."""

    __tablename__ = "partnership"
    __table_args__ = (
        enum_check("status", PartnershipStatus),
        enum_check("direction", PartnershipDirection),
        CheckConstraint(
            "suspended_by IS NULL OR suspended_by IN ('US', 'PARTNER')", name="suspended_by_valid"
        ),
        CheckConstraint(
            "(status = 'SUSPENDED') = (suspended_by IS NOT NULL)", name="suspension_has_side"
        ),
        CheckConstraint(
            "requested_scopes <@ ARRAY['AVAILABILITY','COVER','MARKET_DATA']::text[]"
            " AND granted_scopes <@ requested_scopes",
            name="scopes_valid",
        ),
        CheckConstraint(
            "status NOT IN ('ACTIVE', 'SUSPENDED') OR cardinality(granted_scopes) > 0",
            name="agreed_scopes_present",
        ),
        CheckConstraint("length(base_url) <= 500", name="base_url_length"),
        CheckConstraint("length(last_error) <= 2000", name="last_error_length"),
    )

    id: Mapped[int] = mapped_column(BigInteger, primary_key=True, autoincrement=True)
    base_url: Mapped[str] = mapped_column(Text, unique=True)
    graphql_endpoint: Mapped[str] = mapped_column(Text)
    proposal_ref: Mapped[uuid.UUID] = mapped_column(UUID(as_uuid=True), unique=True)
    direction: Mapped[str] = mapped_column(String(16))
    status: Mapped[str] = mapped_column(String(16))
    requested_scopes: Mapped[list[str]] = mapped_column(ARRAY(Text))
    granted_scopes: Mapped[list[str]] = mapped_column(
        ARRAY(Text), server_default=text("'{}'::text[]")
    )
    suspended_by: Mapped[str | None] = mapped_column(String(16))
    protocol_version: Mapped[str] = mapped_column(String(64))
    # From the partner's manifest (public): its co-op, local authorities and keys.
    coop_name: Mapped[str | None] = mapped_column(Text)
    home_la_code: Mapped[str | None] = mapped_column(String(9))
    local_authorities: Mapped[list[dict[str, str]]] = mapped_column(
        JSONB, server_default=text("'[]'::jsonb")
    )
    keys: Mapped[list[dict[str, str]]] = mapped_column(JSONB, server_default=text("'[]'::jsonb"))
    manifest_fetched_at: Mapped[dt.datetime | None] = mapped_column(DateTime(timezone=True))
    # The HMAC key for the pseudonymous references this instance gives this partner:
    # stable per partner, different between partners, never sent.
    pseudonym_key: Mapped[bytes] = mapped_column(
        LargeBinary, default=lambda: secrets.token_bytes(32)
    )
    # Our position in the partner's availability feed (opaque, theirs).
    feed_cursor: Mapped[str | None] = mapped_column(Text)
    last_sync_at: Mapped[dt.datetime | None] = mapped_column(DateTime(timezone=True))
    last_contact_at: Mapped[dt.datetime | None] = mapped_column(DateTime(timezone=True))
    last_error: Mapped[str | None] = mapped_column(Text)
    last_error_at: Mapped[dt.datetime | None] = mapped_column(DateTime(timezone=True))
    proposed_by_id: Mapped[int | None] = mapped_column(ForeignKey("member.id", ondelete="SET NULL"))
    created_at: Mapped[dt.datetime] = mapped_column(
        DateTime(timezone=True), server_default=func.now()
    )
    updated_at: Mapped[dt.datetime] = mapped_column(
        DateTime(timezone=True), server_default=func.now()
    )


class PartnerWindow(Base):
    """A free window of a partner co-op's PA, as its availability feed gave it: the PA
    only by the pseudonymous reference the partner gives us, skills, postcode district and
    travel range. `ref` is the partner's reference for the availability window; one window
    may arrive as several free periods (`period` numbers them). Deleted with the
    partnership's data when it ends."""

    __tablename__ = "partner_window"
    __table_args__ = (
        valid_range_check("during"),
        CheckConstraint("length(ref) <= 100", name="ref_length"),
        CheckConstraint("length(pa_ref) <= 100", name="pa_ref_length"),
        CheckConstraint("length(district) <= 8", name="district_length"),
        CheckConstraint("travel_km >= 0", name="travel_non_negative"),
        CheckConstraint("travel_km <> 'NaN'", name="travel_a_number"),
        Index("ix_partner_window_during", "during", postgresql_using="gist"),
        # `partnerAvailability(filter: {skill})` (migration 0012).
        Index(
            "ix_partner_window_skills",
            "skills",
            postgresql_using="gin",
            postgresql_ops={"skills": "jsonb_path_ops"},
        ),
    )

    partnership_id: Mapped[int] = mapped_column(
        ForeignKey("partnership.id", ondelete="CASCADE"), primary_key=True
    )
    ref: Mapped[str] = mapped_column(Text, primary_key=True)
    period: Mapped[int] = mapped_column(Integer, primary_key=True)
    pa_ref: Mapped[str] = mapped_column(Text)
    # [{"skill": str, "expiresOn": "YYYY-MM-DD" | null}]
    skills: Mapped[list[dict[str, str | None]]] = mapped_column(JSONB)
    district: Mapped[str | None] = mapped_column(Text, index=True)
    travel_km: Mapped[Decimal] = mapped_column(Numeric(6, 2))
    during: Mapped[Range[dt.datetime]] = mapped_column(TSTZRANGE)
    received_at: Mapped[dt.datetime] = mapped_column(
        DateTime(timezone=True), server_default=func.now()
    )


class PeerDelivery(Base):
    """A partner's message applied here, by its idempotency key: a repeat of the key
    (the partner's outbox delivers at least once) gets the first answer back and changes
    nothing (federation/idempotency.py). Kept for `RETENTION` after it arrived."""

    __tablename__ = "peer_delivery"
    __table_args__ = (
        CheckConstraint("length(instance) <= 500", name="instance_length"),
        CheckConstraint("length(operation) <= 100", name="operation_length"),
    )

    instance: Mapped[str] = mapped_column(Text, primary_key=True)  # the sender's base URL
    idempotency_key: Mapped[uuid.UUID] = mapped_column(UUID(as_uuid=True), primary_key=True)
    operation: Mapped[str] = mapped_column(Text)
    answer: Mapped[dict[str, object]] = mapped_column(JSONB)
    received_at: Mapped[dt.datetime] = mapped_column(
        DateTime(timezone=True), server_default=func.now(), index=True
    )


class Referral(Base):
    """A person waiting for care in an area: demand, not a case file. It holds no name,
    address or full postcode (only the postcode district), so it identifies no one by
    itself; it is still personal data (needs, hours), read only by admins and coordinators
    working in or next to its local authority (care/policy.py, `referral_visible`)."""

    __tablename__ = "referral"
    __table_args__ = (
        enum_check("status", ReferralStatus),
        CheckConstraint(
            f"postcode_district ~ '^{REFERRAL_DISTRICT_PATTERN}$'", name="postcode_district_valid"
        ),
        CheckConstraint(
            f"hours_per_week > 0 AND hours_per_week <= {MAX_REFERRAL_HOURS}",
            name="hours_per_week_bounded",
        ),
        Index("ix_referral_la_status_district", "la_code", "status", "postcode_district"),
    )

    id: Mapped[int] = mapped_column(BigInteger, primary_key=True, autoincrement=True)
    la_code: Mapped[str] = mapped_column(ForeignKey("local_authority.gss_code"))
    postcode_district: Mapped[str] = mapped_column(String(4))
    needs: Mapped[list[str]] = mapped_column(ARRAY(Text), server_default=text("'{}'"))
    hours_per_week: Mapped[Decimal] = mapped_column(Numeric(5, 2))
    referred_on: Mapped[dt.date] = mapped_column(Date)
    status: Mapped[str] = mapped_column(String(16), server_default=ReferralStatus.WAITING.value)
    note: Mapped[str | None] = mapped_column(Text)
    recorded_by_id: Mapped[int | None] = mapped_column(ForeignKey("member.id", ondelete="SET NULL"))
    created_at: Mapped[dt.datetime] = mapped_column(
        DateTime(timezone=True), server_default=func.now()
    )
    updated_at: Mapped[dt.datetime] = mapped_column(
        DateTime(timezone=True), server_default=func.now()
    )


# Bounds on stored text, whoever writes it (migration 0008). The API refuses longer input
# first, with a coded error (schema/limits.py); these are the last guard. Array columns
# are bounded in items and in total characters.
TEXT_BOUNDS: tuple[tuple[str, str, str], ...] = (
    ("local_authority", "name", "length(name) <= 200"),
    ("coop", "name", "length(name) <= 200"),
    ("coop", "society_number", "length(society_number) <= 50"),
    ("coop", "cqc_provider_id", "length(cqc_provider_id) <= 50"),
    ("coop", "description", "length(description) <= 10000"),
    ("member", "name", "length(name) <= 200"),
    ("member", "email", "length(email) <= 254"),
    ("member", "phone", "length(phone) <= 50"),
    ("member", "postcode", "length(postcode) <= 16"),
    (
        "service_user_profile",
        "needs",
        "cardinality(needs) <= 50 AND length(array_to_string(needs, '')) <= 10000",
    ),
    ("carer_link", "relationship", "length(relationship) <= 100"),
    ("pa_skill", "skill", "length(skill) <= 200"),
    ("cluster", "name", "length(name) <= 200"),
    (
        "cluster",
        "postcode_districts",
        "cardinality(postcode_districts) <= 50"
        " AND length(array_to_string(postcode_districts, '')) <= 800",
    ),
    (
        "cluster",
        "need_tags",
        "cardinality(need_tags) <= 50 AND length(array_to_string(need_tags, '')) <= 10000",
    ),
    ("pool", "name", "length(name) <= 200"),
    (
        "visit",
        "tasks",
        "cardinality(tasks) <= 50 AND length(array_to_string(tasks, '')) <= 25000",
    ),
    ("visit", "cancel_reason", "length(cancel_reason) <= 500"),
    ("absence", "note", "length(note) <= 1000"),
    ("cover_request", "note", "length(note) <= 4000"),
    (
        "referral",
        "needs",
        "cardinality(needs) <= 50 AND length(array_to_string(needs, '')) <= 10000",
    ),
    ("referral", "note", "length(note) <= 1000"),
)

for _table, _column, _check in TEXT_BOUNDS:
    Base.metadata.tables[_table].append_constraint(
        CheckConstraint(_check, name=f"{_column}_length")
    )


class CoverExchange(Base):
    """One cross-boundary cover exchange, as this instance sees it (docs/federation.md,
    section 12). Both instances keep a row under the same `ref`, chosen by the requesting
    side. REQUESTING: our person's visit (`visit_id`, `cover_request_id`), a partner's PA
    known only by `pa_ref` until confirmed (then `pa_first_name`). PROVIDING: our PA
    (`pa_id`), whose time the row holds while HELD, ACCEPTED or CONFIRMED (the trigger
    writes a HOLD commitment, migration 0014), and a partner's person known only by
    district, needed skills and time until confirmed (then first name, address and the
    care summary the requesting coordinator chose to share)."""

    __tablename__ = "cover_exchange"
    __table_args__ = (
        UniqueConstraint("partnership_id", "ref", name="uq_cover_exchange_partnership_ref"),
        valid_range_check("during"),
        enum_check("side", ExchangeSide),
        enum_check("status", ExchangeStatus),
        CheckConstraint("side = 'PROVIDING' OR pa_id IS NULL", name="pa_on_providing_side"),
        CheckConstraint(
            "side = 'REQUESTING' OR (visit_id IS NULL AND cover_request_id IS NULL)",
            name="visit_on_requesting_side",
        ),
        CheckConstraint(
            "cancelled_by IS NULL OR cancelled_by IN ('US', 'PARTNER')", name="cancelled_by_valid"
        ),
        CheckConstraint(
            "(status = 'CANCELLED') = (cancelled_by IS NOT NULL)", name="cancellation_has_side"
        ),
        CheckConstraint("length(pa_ref) <= 100", name="pa_ref_length"),
        CheckConstraint("length(district) <= 8", name="district_length"),
        CheckConstraint(
            "cardinality(skills) <= 50 AND length(array_to_string(skills, '')) <= 2000",
            name="skills_length",
        ),
        CheckConstraint("length(pa_first_name) <= 100", name="pa_first_name_length"),
        CheckConstraint("length(person_first_name) <= 100", name="person_first_name_length"),
        CheckConstraint("length(person_address) <= 500", name="person_address_length"),
        CheckConstraint("length(care_summary) <= 2000", name="care_summary_length"),
        CheckConstraint("length(reason) <= 500", name="reason_length"),
        # One live exchange per cover request: a visit is never asked of two partners at
        # once, so it can never be covered twice.
        Index(
            "uq_cover_exchange_live_request",
            "cover_request_id",
            unique=True,
            postgresql_where=text("status IN ('HELD', 'ACCEPTED', 'CONFIRMED')"),
        ),
        # The expiry sweep: holds not yet confirmed, by when they run out.
        Index(
            "ix_cover_exchange_pending_expiry",
            "hold_expires_at",
            postgresql_where=text("status IN ('HELD', 'ACCEPTED')"),
        ),
    )

    id: Mapped[int] = mapped_column(BigInteger, primary_key=True, autoincrement=True)
    ref: Mapped[uuid.UUID] = mapped_column(UUID(as_uuid=True))
    partnership_id: Mapped[int] = mapped_column(
        ForeignKey("partnership.id", ondelete="CASCADE"), index=True
    )
    side: Mapped[str] = mapped_column(String(16))
    status: Mapped[str] = mapped_column(String(16))
    during: Mapped[Range[dt.datetime]] = mapped_column(TSTZRANGE)
    district: Mapped[str | None] = mapped_column(Text)
    skills: Mapped[list[str]] = mapped_column(ARRAY(Text), server_default=text("'{}'"))
    pa_ref: Mapped[str] = mapped_column(Text)
    hold_expires_at: Mapped[dt.datetime] = mapped_column(DateTime(timezone=True))
    # REQUESTING side.
    visit_id: Mapped[int | None] = mapped_column(
        ForeignKey("visit.id", ondelete="CASCADE"), index=True
    )
    cover_request_id: Mapped[int | None] = mapped_column(
        ForeignKey("cover_request.id", ondelete="CASCADE"), index=True
    )
    # PROVIDING side.
    pa_id: Mapped[int | None] = mapped_column(
        ForeignKey("pa_profile.member_id", ondelete="CASCADE"), index=True
    )
    # Exchanged only once the requesting side has confirmed.
    pa_first_name: Mapped[str | None] = mapped_column(Text)
    person_first_name: Mapped[str | None] = mapped_column(Text)
    person_address: Mapped[str | None] = mapped_column(Text)
    # REQUESTING: what the coordinator chose to share (sent on confirming); PROVIDING:
    # what arrived with the confirmation.
    care_summary: Mapped[str | None] = mapped_column(Text)
    cancelled_by: Mapped[str | None] = mapped_column(String(16))
    reason: Mapped[str | None] = mapped_column(Text)
    created_by_id: Mapped[int | None] = mapped_column(ForeignKey("member.id", ondelete="SET NULL"))
    created_at: Mapped[dt.datetime] = mapped_column(
        DateTime(timezone=True), server_default=func.now()
    )
    updated_at: Mapped[dt.datetime] = mapped_column(
        DateTime(timezone=True), server_default=func.now()
    )


class CoverExchangeEvent(Base):
    """Every change of an exchange's status, on this side, with who made it: one of our
    members (`by_member_id`, `by_role`), the partner co-op (`by_side` PARTNER, with the
    role its message names), or nobody (SYSTEM: a hold that ran out)."""

    __tablename__ = "cover_exchange_event"
    __table_args__ = (
        enum_check("status", ExchangeStatus),
        CheckConstraint("by_side IN ('US', 'PARTNER', 'SYSTEM')", name="by_side_valid"),
        CheckConstraint("length(by_role) <= 32", name="by_role_length"),
        CheckConstraint("length(note) <= 500", name="note_length"),
        Index("ix_cover_exchange_event_exchange_at", "exchange_id", "at"),
    )

    id: Mapped[int] = mapped_column(BigInteger, primary_key=True, autoincrement=True)
    exchange_id: Mapped[int] = mapped_column(ForeignKey("cover_exchange.id", ondelete="CASCADE"))
    at: Mapped[dt.datetime] = mapped_column(DateTime(timezone=True), server_default=func.now())
    status: Mapped[str] = mapped_column(String(16))
    by_side: Mapped[str] = mapped_column(String(16))
    by_member_id: Mapped[int | None] = mapped_column(ForeignKey("member.id", ondelete="SET NULL"))
    by_role: Mapped[str | None] = mapped_column(String(32))
    note: Mapped[str | None] = mapped_column(Text)


class PartnerCluster(Base):
    """A cluster a partner co-op has opened in one of our local authorities, as its notice
    told us (partners holding COVER are told; docs/federation.md, section 13). Public
    facts only: the partner's reference, the cluster's name, local authority and
    district. Deleted with the partnership's data when it ends."""

    __tablename__ = "partner_cluster"
    __table_args__ = (
        UniqueConstraint("partnership_id", "ref", name="uq_partner_cluster_partnership_ref"),
        CheckConstraint("length(ref) <= 100", name="ref_length"),
        CheckConstraint("length(name) <= 200", name="name_length"),
        CheckConstraint("length(district) <= 8", name="district_length"),
    )

    id: Mapped[int] = mapped_column(BigInteger, primary_key=True, autoincrement=True)
    partnership_id: Mapped[int] = mapped_column(
        ForeignKey("partnership.id", ondelete="CASCADE"), index=True
    )
    ref: Mapped[str] = mapped_column(Text)
    name: Mapped[str] = mapped_column(Text)
    la_code: Mapped[str] = mapped_column(String(9), index=True)
    district: Mapped[str | None] = mapped_column(Text)
    opened_at: Mapped[dt.datetime] = mapped_column(DateTime(timezone=True))
    received_at: Mapped[dt.datetime] = mapped_column(
        DateTime(timezone=True), server_default=func.now()
    )
