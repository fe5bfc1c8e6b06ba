"""Who may see what, as SQL predicates every read query composes.

Each function returns a boolean SQL expression over the given table. Rows a caller may not
see are filtered in SQL (never loaded); fields a caller may not see are computed as a
boolean column next to the row (a "mask") and blanked before they leave the service.
Later readers (partners, LA analysts, compiled read paths) reuse these predicates.

The rules (see docs/architecture.md, "Privacy"):
- Admins see everything.
- A service user's personal data (contact, postcode, location, funding, visit tasks) is
  readable by the person, their linked carers, coordinators of their cluster and admins;
  and by a PA only while the PA has a visit with the person between 7 days ago and
  14 days ahead.
- PAs on the person's cluster team see their name and needs. PAs see their own visits,
  and a visit while its cover is offered to them (the offer open and unexpired; not the
  person, whose first name comes with the summary), with the offer's summary
  (`offer_summary_visible`: time, postcode district, distance, first name, needs and
  tasks; never the address or contact details, which come only with a visit of their
  own under the rule above).
- Coordinators see the visits of the service users of the clusters they support, and no
  other visit: a PA's time elsewhere is busy time only (`busy_time_visible`).
- A PA's absences: the PA, admins, and coordinators of a cluster whose team includes the
  PA; the absence's note (it may hold health details) only the PA and admins.
- LA analysts and anonymous callers see no member, visit or availability at all.
- Referrals (people waiting for care): admins, and coordinators working in or next to
  the referral's local authority (`referral_visible`); no one else, partners included.
- Cover exchanges with partner co-ops (`cover_exchange_visible`): on the requesting side
  admins and coordinators who manage the person; on the providing side admins,
  coordinators of a cluster whose team has the PA, and the PA. Their personal fields
  (first names, address, care summary) only once confirmed
  (`cover_exchange_personal_visible`).
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Callable
from typing import Any

from sqlalchemy import (
    BigInteger,
    BindParameter,
    ColumnElement,
    DateTime,
    Select,
    and_,
    bindparam,
    exists,
    false,
    func,
    or_,
    select,
    true,
)
from sqlalchemy.orm import aliased

from care.enums import ClusterStatus, CoverOfferStatus, MembershipClass, Role, VisitStatus
from care.models import (
    CarerLink,
    Cluster,
    ClusterPa,
    ClusterServiceUser,
    CoverExchange,
    CoverOffer,
    CoverRequest,
    LocalAuthorityNeighbour,
    Member,
    PaProfile,
    Visit,
)
from care.viewer import Viewer

RECENT_VISIT_BEFORE = dt.timedelta(days=7)
RECENT_VISIT_AHEAD = dt.timedelta(days=14)


# --- the viewer's values ------------------------------------------------------------------


def me(viewer: Viewer) -> BindParameter[int]:
    """The viewer's member id as a named parameter: a statement built for one viewer can be
    run again for another of the same role with `viewer_params` (see care/queries.py)."""
    return bindparam("viewer_member_id", viewer.member_id, type_=BigInteger)


def now(viewer: Viewer) -> BindParameter[dt.datetime]:
    """The viewer's time (the request's) as a named parameter, as `me`: a statement built
    earlier (a cached plan) must read the time of the request running it."""
    return bindparam("viewer_now", viewer.now, type_=DateTime(timezone=True))


def viewer_params(viewer: Viewer) -> dict[str, Any]:
    """Values of the named parameters the predicates below use."""
    return {
        "viewer_member_id": viewer.member_id,
        "viewer_now": viewer.now,
        "recent_from": viewer.now - RECENT_VISIT_BEFORE,
        "recent_to": viewer.now + RECENT_VISIT_AHEAD,
    }


def shape(viewer: Viewer) -> tuple[Role | None, bool]:
    """What decides a predicate's SQL text (as opposed to its parameter values)."""
    return viewer.role, viewer.member_id is None


# --- building blocks: sets of ids related to the viewer --------------------------------


def _set(*columns: Any) -> Select:
    """A set of ids that depends only on the viewer: never correlated with the outer query
    (which may join the same tables, e.g. cluster_service_user)."""
    return select(*columns).correlate(None)


def _viewer_set(viewer: Viewer, name: str, build: Callable[[], Select]) -> Select:
    """The viewer's set `name` (what `build` selects) as `SELECT .. FROM viewer_<name>`, a
    MATERIALIZED CTE that SQLAlchemy renders once at the top of the statement however
    many predicates probe it: PostgreSQL plans and computes it once, not once per probe
    (a coordinator's cluster page probes the same few sets dozens of times). Built once
    per Viewer object (`Viewer.sets`): SQLAlchemy wants one CTE object per name in a
    statement (build a statement's predicates from one Viewer: two would clash, a
    CompileError), and a set never holds another viewer's values (statements reused
    across viewers take theirs by name, `viewer_params`)."""
    found = viewer.sets.get(name)
    if found is None:
        cte = build().cte(f"viewer_{name}").prefix_with("MATERIALIZED")
        found = viewer.sets[name] = _set(*cte.c)
    return found


def among(column: Any, ids: Select) -> ColumnElement[bool]:
    """Is `column` in the viewer's set `ids`? `coalesce(column IN (SELECT ...))`: the one-
    argument coalesce changes nothing (same value, NULL included) but stops the planner
    from turning the IN into a semi-join, which it re-runs for every outer row wherever
    the predicate sits in a LATERAL loop or correlated subquery (a person's visits: the
    person's cluster and a scan of `cluster` per visit, in the generic plan of a prepared
    statement). Kept as a subquery, the set, which does not depend on the row (`_set`), is
    a hashed SubPlan: read once per statement and probed per row by a hash lookup. (An
    `= ANY(ARRAY(SELECT ...))` is read once too, but probed by a linear scan of the array
    and taken into index conditions, where next to `service_user_id = <person>` on the
    GiST (service_user_id, during) index the bitmap scan runs once per element.)"""
    return func.coalesce(column.in_(ids))


def supported_cluster_ids(viewer: Viewer) -> Select:
    return _viewer_set(
        viewer,
        "clusters",
        lambda: select(Cluster.id).where(Cluster.support_worker_id == me(viewer)),
    )


def managed_service_user_ids(viewer: Viewer) -> Select:
    """The people of the clusters the viewer (a coordinator) supports."""
    return _viewer_set(
        viewer,
        "service_users",
        lambda: service_users_of_clusters(supported_cluster_ids(viewer)),
    )


def team_cluster_ids(viewer: Viewer) -> Select:
    return _viewer_set(
        viewer,
        "team_clusters",
        lambda: select(ClusterPa.cluster_id).where(ClusterPa.pa_id == me(viewer)),
    )


def service_users_of_clusters(cluster_ids: Select) -> Select:
    return _set(ClusterServiceUser.service_user_id).where(
        ClusterServiceUser.cluster_id.in_(cluster_ids)
    )


def linked_service_user_ids(viewer: Viewer) -> Select:
    return _viewer_set(
        viewer,
        "linked_service_users",
        lambda: select(CarerLink.service_user_id).where(CarerLink.carer_id == me(viewer)),
    )


def carers_of(service_user_ids: Select) -> Select:
    return _set(CarerLink.carer_id).where(CarerLink.service_user_id.in_(service_user_ids))


def recent_visit_service_user_ids(viewer: Viewer) -> Select:
    """Service users the viewer (a PA) visits between 7 days ago and 14 days ahead."""
    v = aliased(Visit)
    window = func.tstzrange(
        bindparam("recent_from", viewer.now - RECENT_VISIT_BEFORE, type_=DateTime(timezone=True)),
        bindparam("recent_to", viewer.now + RECENT_VISIT_AHEAD, type_=DateTime(timezone=True)),
    )
    return _viewer_set(
        viewer,
        "recent_service_users",
        lambda: select(v.service_user_id).where(
            v.pa_id == me(viewer),
            v.status != VisitStatus.CANCELLED.value,
            v.during.op("&&")(window),
        ),
    )


def pas_visiting(service_user_ids: Select) -> Select:
    v = aliased(Visit)
    return _set(v.pa_id).where(
        v.service_user_id.in_(service_user_ids),
        v.pa_id.is_not(None),
        v.status != VisitStatus.CANCELLED.value,
    )


def support_workers_of(service_user_ids: Select) -> Select:
    return _set(Cluster.support_worker_id).where(
        Cluster.id.in_(
            _set(ClusterServiceUser.cluster_id).where(
                ClusterServiceUser.service_user_id.in_(service_user_ids)
            )
        ),
        Cluster.support_worker_id.is_not(None),
    )


def open_offer_request_ids(viewer: Viewer) -> Select:
    """Cover requests offered to the viewer (a PA) by an offer still open: OPEN and not yet
    expired. A declined, withdrawn, closed or expired offer grants nothing, and an accepted
    one made the visit the PA's own."""
    return _viewer_set(
        viewer,
        "offered_requests",
        lambda: select(CoverOffer.cover_request_id).where(
            CoverOffer.pa_id == me(viewer),
            CoverOffer.status == CoverOfferStatus.OPEN.value,
            CoverOffer.expires_at > func.now(),
        ),
    )


def offered_visit_ids(viewer: Viewer) -> Select:
    """Visits whose cover is offered to the viewer (a PA) by an open offer."""
    return _viewer_set(
        viewer,
        "offered_visits",
        lambda: select(CoverRequest.visit_id).where(
            CoverRequest.id.in_(open_offer_request_ids(viewer))
        ),
    )


def cluster_managed(viewer: Viewer, cluster_id: Any) -> ColumnElement[bool]:
    """May the viewer run this cluster (its figures, its live cover feed, its records)?
    Admins: every cluster; coordinators: the clusters they support; anyone else: none."""
    if viewer.role is Role.ADMIN:
        return true()
    if viewer.role is Role.COORDINATOR and viewer.member_id is not None:
        return among(cluster_id, supported_cluster_ids(viewer))
    return false()


def _own(viewer: Viewer) -> Select:
    return _set(me(viewer))


# --- members -----------------------------------------------------------------------


def member_visible(viewer: Viewer, member: Any = Member) -> ColumnElement[bool]:
    """May the viewer know this member exists, with their name (and a service user's needs)?"""
    m = member
    mid = m.id  # type: ignore[attr-defined]
    role = viewer.role
    if role is Role.ADMIN:
        return true()
    if role is None or role is Role.LA_ANALYST or viewer.member_id is None:
        return false()
    itself = mid == me(viewer)
    if role is Role.COORDINATOR:
        return or_(
            itself,
            m.membership_class == MembershipClass.WORKER.value,  # type: ignore[attr-defined]
            among(mid, managed_service_user_ids(viewer)),
            among(mid, managed_carer_ids(viewer)),
        )
    if role is Role.PA:
        teams = team_cluster_ids(viewer)
        return or_(
            itself,
            among(
                mid,
                _viewer_set(viewer, "team_service_users", lambda: service_users_of_clusters(teams)),
            ),
            among(mid, recent_or_any_visit_service_users(viewer)),
            # Not the person of a visit merely offered: CoverOffer.visitSummary gives what
            # the PA needs to decide (their first name among it), and no more.
            among(
                mid,
                _viewer_set(
                    viewer,
                    "team_pas",
                    lambda: select(ClusterPa.pa_id).where(ClusterPa.cluster_id.in_(teams)),
                ),
            ),
            among(
                mid,
                _viewer_set(
                    viewer,
                    "team_support_workers",
                    lambda: select(Cluster.support_worker_id).where(
                        Cluster.id.in_(teams), Cluster.support_worker_id.is_not(None)
                    ),
                ),
            ),
        )
    if role is Role.SERVICE_USER:
        own = _own(viewer)
        return or_(
            itself,
            among(mid, own_carer_ids(viewer)),
            among(mid, _viewer_set(viewer, "own_pas", lambda: pas_visiting(own))),
            among(mid, _viewer_set(viewer, "own_support_workers", lambda: support_workers_of(own))),
        )
    if role is Role.CARER:
        linked = linked_service_user_ids(viewer)
        return or_(
            itself,
            among(mid, linked),
            among(mid, _viewer_set(viewer, "linked_pas", lambda: pas_visiting(linked))),
            among(
                mid,
                _viewer_set(viewer, "linked_support_workers", lambda: support_workers_of(linked)),
            ),
        )
    return false()


def managed_carer_ids(viewer: Viewer) -> Select:
    """The carers of the people of the clusters the viewer (a coordinator) supports."""
    return _viewer_set(viewer, "carers", lambda: carers_of(managed_service_user_ids(viewer)))


def own_carer_ids(viewer: Viewer) -> Select:
    """The viewer's (a service user's) carers."""
    return _viewer_set(viewer, "own_carers", lambda: carers_of(_own(viewer)))


def recent_or_any_visit_service_users(viewer: Viewer) -> Select:
    """Service users a PA has (or had) any visit with: PAs see their own visits, and a
    visit names its service user."""
    v = aliased(Visit)
    return _viewer_set(
        viewer,
        "visited_service_users",
        lambda: select(v.service_user_id).where(v.pa_id == me(viewer)),
    )


def pay_visible(viewer: Viewer, member: Any = Member) -> ColumnElement[bool]:
    """May the viewer read this member's pay (`hourlyPayPence`, `payRates`)? Admins and the
    PA themself only: coordinators deploy PAs but do not see what they earn."""
    if viewer.role is Role.ADMIN:
        return true()
    if viewer.member_id is None or viewer.role is not Role.PA:
        return false()
    mid: ColumnElement[int] = member.id
    return mid == me(viewer)


def member_personal_visible(viewer: Viewer, member: Any = Member) -> ColumnElement[bool]:
    """May the viewer read this member's personal data (contact, postcode, location,
    funding)? Always combined with `member_visible`."""
    m = member
    mid = m.id  # type: ignore[attr-defined]
    role = viewer.role
    if role is Role.ADMIN:
        return true()
    if role is None or role is Role.LA_ANALYST or viewer.member_id is None:
        return false()
    itself = mid == me(viewer)
    if role is Role.COORDINATOR:
        return or_(
            itself,
            # The PAs they deploy, not fellow staff (EXISTS: one index probe per row).
            exists().where(aliased(PaProfile).member_id == mid),
            among(mid, managed_service_user_ids(viewer)),
            among(mid, managed_carer_ids(viewer)),
        )
    if role is Role.PA:
        return or_(itself, among(mid, recent_visit_service_user_ids(viewer)))
    if role is Role.SERVICE_USER:
        return or_(itself, among(mid, own_carer_ids(viewer)))
    if role is Role.CARER:
        return or_(itself, among(mid, linked_service_user_ids(viewer)))
    return false()


# --- visits ------------------------------------------------------------------------


def visit_visible(viewer: Viewer, visit: Any = Visit) -> ColumnElement[bool]:
    v = visit
    role = viewer.role
    if role is Role.ADMIN:
        return true()
    if role is None or role is Role.LA_ANALYST or viewer.member_id is None:
        return false()
    su = v.service_user_id  # type: ignore[attr-defined]
    pa = v.pa_id  # type: ignore[attr-defined]
    if role is Role.COORDINATOR:
        # Only their clusters' people: a visit of a PA of their team elsewhere would tell
        # them whom the PA visits and what for. They see that time as busy time instead.
        return among(su, managed_service_user_ids(viewer))
    if role is Role.PA:
        # Their own visits, and visits offered to them as cover while the offer is open
        # (time and person only: tasks stay masked until the visit is theirs).
        return or_(pa == me(viewer), among(v.id, offered_visit_ids(viewer)))  # type: ignore[attr-defined]
    if role is Role.SERVICE_USER:
        return su == me(viewer)
    if role is Role.CARER:
        return among(su, linked_service_user_ids(viewer))
    return false()


def visit_tasks_visible(viewer: Viewer, visit: Any = Visit) -> ColumnElement[bool]:
    """Tasks describe care in detail: the person's circle, and a PA only while they have a
    visit with the person between 7 days ago and 14 days ahead."""
    v = visit
    role = viewer.role
    if role is Role.PA:
        su = v.service_user_id  # type: ignore[attr-defined]
        return and_(
            v.pa_id == me(viewer),  # type: ignore[attr-defined]
            among(su, recent_visit_service_user_ids(viewer)),
        )
    return visit_visible(viewer, visit)


# --- everything else ----------------------------------------------------------------


def sees_coop_records(viewer: Viewer) -> bool:
    """Clusters, pools and their structure are internal to the co-op (not personal data)."""
    return viewer.in_coop


def sees_partnerships(viewer: Viewer) -> bool:
    """Partnerships with other instances, and what their manifests say, are for admins."""
    return viewer.is_admin


def cover_rules_visible(viewer: Viewer) -> ColumnElement[bool]:
    """The co-op's cover rules and weights (`Coop.coverRules`): its own people, not
    anonymous callers, partners or LA analysts, to whom the co-op's profile is public.
    A mask over the co-op's row (`care.queries.coop_select`), read by both read paths."""
    return true() if viewer.in_coop else false()


def availability_visible(viewer: Viewer, pa_id_column: Any) -> ColumnElement[bool]:
    role = viewer.role
    if role in (Role.ADMIN, Role.COORDINATOR):
        return true()
    if role is Role.PA and viewer.member_id is not None:
        return pa_id_column == me(viewer)
    return false()


# --- cover: absences, cover requests, offers ---------------------------------------------


def team_pa_ids(viewer: Viewer) -> Select:
    """PAs on the teams of the clusters the viewer (a coordinator) supports."""
    return _viewer_set(
        viewer,
        "supported_pas",
        lambda: select(ClusterPa.pa_id).where(
            ClusterPa.cluster_id.in_(supported_cluster_ids(viewer))
        ),
    )


def absence_visible(viewer: Viewer, absence: Any) -> ColumnElement[bool]:
    """A PA's absences: the PA, admins, and the coordinators who arrange the PA's cover
    (of a cluster whose team includes the PA)."""
    role = viewer.role
    if role is Role.ADMIN:
        return true()
    if viewer.member_id is None:
        return false()
    if role is Role.COORDINATOR:
        return among(absence.pa_id, team_pa_ids(viewer))
    if role is Role.PA:
        return absence.pa_id == me(viewer)  # type: ignore[no-any-return]
    return false()


def absence_note_visible(viewer: Viewer, absence: Any) -> ColumnElement[bool]:
    """An absence's note may hold health details: the PA and admins only (a coordinator
    needs the dates and the kind to arrange cover, not the reason)."""
    if viewer.role is Role.ADMIN:
        return true()
    if viewer.role is Role.PA and viewer.member_id is not None:
        return absence.pa_id == me(viewer)  # type: ignore[no-any-return]
    return false()


def _worked_la_codes(viewer: Viewer) -> Select:
    return _viewer_set(
        viewer,
        "las",
        lambda: select(Cluster.la_code).where(
            Cluster.support_worker_id == me(viewer), Cluster.status != ClusterStatus.CLOSED.value
        ),
    )


def in_referral_area(viewer: Viewer, la_code: Any) -> ColumnElement[bool]:
    """Is the local authority one a coordinator works in (that of a cluster they support
    that is not closed) or a neighbour of one? The co-op grows by opening clusters across
    the boundary into the neighbouring authority, so its coordinators weigh the demand
    waiting on both sides of it."""
    mine = _worked_la_codes(viewer)
    n = LocalAuthorityNeighbour
    return or_(
        among(la_code, mine),
        among(la_code, _set(n.la_b).where(n.la_a.in_(mine))),
        among(la_code, _set(n.la_a).where(n.la_b.in_(mine))),
    )


def referral_visible(viewer: Viewer, la_code: Any) -> ColumnElement[bool]:
    """A referral (a person waiting for care) is personal data: admins, and coordinators
    of a cluster in its local authority or a neighbouring one. PAs, service users,
    carers, LA analysts (they get aggregate figures, not rows), partners and anonymous
    callers: never."""
    if viewer.role is Role.ADMIN:
        return true()
    if viewer.role is Role.COORDINATOR and viewer.member_id is not None:
        return in_referral_area(viewer, la_code)
    return false()


def busy_time_visible(viewer: Viewer, pa_id_column: Any) -> ColumnElement[bool]:
    """When a PA is busy (visits and absences as bare periods: no person, kind or note):
    admins, every coordinator (rota planning across clusters) and the PA themself. Decided
    per PA in SQL for both read paths (`care.queries.busy_time_select`): a PA whose busy
    time the caller may not read is null to the API rather than empty."""
    role = viewer.role
    if role is Role.ADMIN:
        return true()
    if viewer.member_id is None:
        return false()
    if role is Role.COORDINATOR:
        return true()
    if role is Role.PA:
        return pa_id_column == me(viewer)  # type: ignore[no-any-return]
    return false()


def cover_request_visible(viewer: Viewer, request: Any) -> ColumnElement[bool]:
    """Whoever may see the visit; and a PA the request is offered to while the offer is
    open (they need to know what they are accepting)."""
    v = aliased(Visit)
    visit_ok = request.visit_id.in_(_set(v.id).where(visit_visible(viewer, v)))
    if viewer.role is Role.PA and viewer.member_id is not None:
        return or_(visit_ok, among(request.id, open_offer_request_ids(viewer)))
    return visit_ok  # type: ignore[no-any-return]


def cover_offer_visible(viewer: Viewer, offer: Any) -> ColumnElement[bool]:
    role = viewer.role
    if role is Role.ADMIN:
        return true()
    if role is Role.COORDINATOR:
        r = aliased(CoverRequest)
        return offer.cover_request_id.in_(  # type: ignore[no-any-return]
            _set(r.id).where(cover_request_visible(viewer, r))
        )
    if role is Role.PA and viewer.member_id is not None:
        return offer.pa_id == me(viewer)  # type: ignore[no-any-return]
    return false()


def offer_summary_visible(viewer: Viewer, offer: Any) -> ColumnElement[bool]:
    """What a PA needs to decide on an offer (`CoverOffer.visitSummary`: time, postcode
    district, distance from their home, first name, needs, tasks): the PA while the offer is
    open (OPEN and unexpired), and whoever else sees the offer (admins; coordinators who see
    the request, i.e. run the person's cluster). Never the address or contact details: once
    the PA has accepted, the visit is theirs and `member_personal_visible` decides."""
    seen = cover_offer_visible(viewer, offer)
    if viewer.role is Role.PA:
        return and_(
            seen,
            offer.status == CoverOfferStatus.OPEN.value,
            offer.expires_at > func.now(),
        )
    return seen


# --- cover exchanges with partner co-ops ---------------------------------------------------


def cover_exchange_visible(viewer: Viewer, exchange: Any = CoverExchange) -> ColumnElement[bool]:
    """REQUESTING (our person, a partner's PA): admins and coordinators of a cluster the
    visit's person belongs to. PROVIDING (a partner's person, our PA): admins,
    coordinators of a cluster whose team has the PA, and the PA. Nobody else: other PAs,
    service users, carers, LA analysts, partner instances, anonymous callers."""
    role = viewer.role
    if role is Role.ADMIN:
        return true()
    if viewer.member_id is None:
        return false()
    if role is Role.COORDINATOR:
        v = aliased(Visit)
        managed_person = exists().where(
            v.id == exchange.visit_id,
            among(v.service_user_id, managed_service_user_ids(viewer)),
        )
        return or_(
            and_(exchange.side == "REQUESTING", managed_person),
            and_(exchange.side == "PROVIDING", among(exchange.pa_id, team_pa_ids(viewer))),
        )
    if role is Role.PA:
        return and_(exchange.side == "PROVIDING", exchange.pa_id == me(viewer))
    return false()


def cover_exchange_personal_visible(exchange: Any = CoverExchange) -> ColumnElement[bool]:
    """First names and the address are exchanged, and shown, only while the exchange is
    CONFIRMED (the booking); a cancelled or expired one shows them no more. Whoever may
    see the exchange may see them then (`cover_exchange_visible`)."""
    return exchange.status == "CONFIRMED"  # type: ignore[no-any-return]


def cover_exchange_summary_visible(exchange: Any = CoverExchange) -> ColumnElement[bool]:
    """The care summary: on the requesting side always (our coordinator wrote it to
    share); on the providing side while CONFIRMED, as the other personal fields."""
    return or_(exchange.side == "REQUESTING", exchange.status == "CONFIRMED")
