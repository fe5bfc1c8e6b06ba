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


class ReferralStatus(StrEnum):
    WAITING = "WAITING"  # waiting for care: the demand that drives expansion
    OFFERED = "OFFERED"  # a place or a PA has been offered, not yet started
    PLACED = "PLACED"  # care has started (here or with a partner co-op)
    WITHDRAWN = "WITHDRAWN"  # no longer waiting: care found elsewhere, moved, or declined


class CoverReason(StrEnum):
    ABSENCE = "ABSENCE"  # the PA is away
    MISSED = "MISSED"  # the person reported the visit missed while it could still be saved
    MANUAL = "MANUAL"  # a coordinator asked (a PA who left, a change of plan)
    PARTNER_CANCELLED = "PARTNER_CANCELLED"  # a partner co-op's PA was to cover; that fell through
    # Needs cover and no one opened a request: booked without a PA, or left needing cover
    # by another writer; the database opens it at commit (migration 0017).
    UNASSIGNED = "UNASSIGNED"


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
    """What holds a PA's time in `pa_commitment` (HOLD: a cover exchange with a partner
    co-op in which this PA covers, from the hold to the confirmed booking)."""

    VISIT = "VISIT"
    ABSENCE = "ABSENCE"
    HOLD = "HOLD"


class ExchangeSide(StrEnum):
    """Which side of a cross-boundary cover exchange this instance is on."""

    REQUESTING = "REQUESTING"  # our person's visit, a partner's PA
    PROVIDING = "PROVIDING"  # a partner's person, our PA


class ExchangeStatus(StrEnum):
    """Where a cross-boundary cover exchange stands (docs/federation.md, section 12)."""

    HELD = "HELD"  # the providing side holds its PA's time and has offered it to the PA
    ACCEPTED = "ACCEPTED"  # the PA said yes; waiting for the requesting side to confirm
    CONFIRMED = "CONFIRMED"  # booked: first names, address and care summary exchanged
    DECLINED = "DECLINED"  # the PA said no
    EXPIRED = "EXPIRED"  # not confirmed before the hold ran out
    CANCELLED = "CANCELLED"  # called off by either side (`cancelled_by`)


class ExchangeActor(StrEnum):
    """Who changed a cover exchange's status, as the side recording it sees it."""

    US = "US"  # one of our members (or our instance acting for them)
    PARTNER = "PARTNER"  # the partner co-op (its message names the role)
    SYSTEM = "SYSTEM"  # nobody: a hold that ran out, a confirmation made automatically


# The statuses in which an exchange holds the providing PA's time.
LIVE_EXCHANGE_STATUSES = (ExchangeStatus.HELD, ExchangeStatus.ACCEPTED, ExchangeStatus.CONFIRMED)


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
    # The signature verified, but the partnership does not allow the call.
    PARTNERSHIP_SUSPENDED = "PARTNERSHIP_SUSPENDED"
    PARTNERSHIP_ENDED = "PARTNERSHIP_ENDED"
    OUT_OF_SCOPE = "OUT_OF_SCOPE"  # a field the partnership's scopes do not grant
    NOT_A_PARTNER = "NOT_A_PARTNER"  # a verified instance asked for a partner-only field


class PartnerScope(StrEnum):
    """What a partnership lets the partner co-op's instance ask for."""

    AVAILABILITY = "AVAILABILITY"  # pseudonymous free windows of PAs in shared pools
    COVER = "COVER"  # cross-boundary cover (Federation II)
    MARKET_DATA = "MARKET_DATA"  # market-shaping figures


class PartnershipStatus(StrEnum):
    """Where a partnership between two instances stands (the same on both sides, except
    while a message between them is on its way)."""

    PROPOSED = "PROPOSED"  # proposed, not yet answered (see `direction`)
    ACTIVE = "ACTIVE"
    REJECTED = "REJECTED"  # the proposal was rejected
    SUSPENDED = "SUSPENDED"  # paused by one side (`suspended_by`); only that side resumes
    ENDED = "ENDED"  # over: everything received from the partner is deleted


class PartnershipDirection(StrEnum):
    OUTGOING = "OUTGOING"  # this instance proposed
    INCOMING = "INCOMING"  # the partner proposed


class PartnershipSide(StrEnum):
    US = "US"
    PARTNER = "PARTNER"


class CareTermKind(StrEnum):
    """What a term of the care vocabulary may be used for. A need is met only by a PA
    skill with the same code, so every NEED term is a skill too; a SKILL term is training
    nobody needs as such (first aid, food hygiene)."""

    NEED = "NEED"
    SKILL = "SKILL"


class CareTermUse(StrEnum):
    """Which pickers a care term belongs in (`careTerms(use:)`): every term may be a
    skill; only NEED terms may be needs."""

    SKILL = "SKILL"
    NEED = "NEED"


class LiveSubject(StrEnum):
    """What a stored live event (`live_event`) is about: each subscription follows one."""

    COVER_REQUEST = "COVER_REQUEST"  # subscription coverRequests (by cluster)
    COVER_OFFER = "COVER_OFFER"  # subscription myCoverOffers (by PA)
    PARTNERSHIP = "PARTNERSHIP"  # subscription partnershipChanged
    COVER_EXCHANGE = "COVER_EXCHANGE"  # subscription coverExchanges


class CoverChangeKind(StrEnum):
    """What happened to a cover request or offer (the kind of a live event about one)."""

    REQUEST_OPENED = "REQUEST_OPENED"
    REQUEST_FILLED = "REQUEST_FILLED"
    REQUEST_RETURNED = "REQUEST_RETURNED"  # back to its original PA (an absence ended early)
    REQUEST_CANCELLED = "REQUEST_CANCELLED"
    OFFER_MADE = "OFFER_MADE"
    OFFER_ACCEPTED = "OFFER_ACCEPTED"  # about an offer: the one that filled its request
    OFFER_DECLINED = "OFFER_DECLINED"
    OFFER_WITHDRAWN = "OFFER_WITHDRAWN"
    OFFER_CLOSED = "OFFER_CLOSED"  # its request was filled, cancelled or returned
