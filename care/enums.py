"""Enumerations of the domain. Stored as text with CHECK constraints so adding a value is
a plain migration, and exposed to GraphQL unchanged."""

from enum import StrEnum


class CoopKind(StrEnum):
    WORKER = "WORKER"
    MULTI_STAKEHOLDER = "MULTI_STAKEHOLDER"
    CONSUMER = "CONSUMER"


class CqcStatus(StrEnum):
    REGISTERED = "REGISTERED"
    APPLIED = "APPLIED"
    NOT_REGISTERED = "NOT_REGISTERED"


class MembershipClass(StrEnum):
    SERVICE_USER = "SERVICE_USER"
    CARER = "CARER"
    WORKER = "WORKER"
    SUPPORTER = "SUPPORTER"


class Funding(StrEnum):
    DIRECT_PAYMENT = "DIRECT_PAYMENT"
    PERSONAL_BUDGET = "PERSONAL_BUDGET"
    LA_COMMISSIONED = "LA_COMMISSIONED"
    NHS_CHC = "NHS_CHC"
    SELF_FUNDED = "SELF_FUNDED"


class ClusterKind(StrEnum):
    GEOGRAPHIC = "GEOGRAPHIC"
    NEED_BASED = "NEED_BASED"


class ClusterStatus(StrEnum):
    PLANNED = "PLANNED"
    ACTIVE = "ACTIVE"
    CLOSED = "CLOSED"


class VisitStatus(StrEnum):
    SCHEDULED = "SCHEDULED"
    NEEDS_COVER = "NEEDS_COVER"
    COMPLETED = "COMPLETED"
    MISSED = "MISSED"
    CANCELLED = "CANCELLED"


# Visits in these states hold the PA's time; the exclusion constraint covers exactly these.
ACTIVE_VISIT_STATUSES = (VisitStatus.SCHEDULED, VisitStatus.COMPLETED)


class Role(StrEnum):
    ADMIN = "ADMIN"
    COORDINATOR = "COORDINATOR"
    PA = "PA"
    SERVICE_USER = "SERVICE_USER"
    CARER = "CARER"
    LA_ANALYST = "LA_ANALYST"


class AbsenceKind(StrEnum):
    HOLIDAY = "HOLIDAY"
    SICKNESS = "SICKNESS"
    TRAINING = "TRAINING"
    OTHER = "OTHER"


class CoverReason(StrEnum):
    ABSENCE = "ABSENCE"  # the PA is away
    MISSED = "MISSED"  # the person reported the visit missed while it could still be saved
    MANUAL = "MANUAL"  # a coordinator asked (a PA who left, a change of plan)


class CoverRequestStatus(StrEnum):
    OPEN = "OPEN"
    FILLED = "FILLED"
    RETURNED = "RETURNED"  # the original PA took the visit back (absence cancelled/shortened)
    CANCELLED = "CANCELLED"  # the visit was cancelled or a coordinator closed the request


class CoverOfferStatus(StrEnum):
    OPEN = "OPEN"  # past expires_at an open offer counts as EXPIRED
    ACCEPTED = "ACCEPTED"
    DECLINED = "DECLINED"
    WITHDRAWN = "WITHDRAWN"  # the coordinator took it back
    CLOSED = "CLOSED"  # another PA's acceptance filled the request, or it was cancelled
    EXPIRED = "EXPIRED"


class CommitmentKind(StrEnum):
    """What holds a PA's time in `pa_commitment` (HOLD: federation holds, to come)."""

    VISIT = "VISIT"
    ABSENCE = "ABSENCE"
    HOLD = "HOLD"


class SignatureRefusal(StrEnum):
    """Why a signed server-to-server message was refused (federation/signatures.py)."""

    NO_SIGNATURE = "NO_SIGNATURE"
    BAD_SIGNATURE = "BAD_SIGNATURE"
    DIGEST_MISMATCH = "DIGEST_MISMATCH"
    EXPIRED = "EXPIRED"
    NOT_YET_VALID = "NOT_YET_VALID"
    EXPIRES_TOO_LATE = "EXPIRES_TOO_LATE"
    REPLAYED_NONCE = "REPLAYED_NONCE"
    UNKNOWN_KEY = "UNKNOWN_KEY"
    MISSING_COMPONENT = "MISSING_COMPONENT"
