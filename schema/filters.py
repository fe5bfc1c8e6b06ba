"""The arguments of the lists, as both read paths apply them: each list's GraphQL
arguments (by GraphQL name) become the named parameters of `care.queries`' filters.

A page declares its filters once (`schema.rows.Filters`, on the Strawberry field: a
nested page's with `schema.types.paged`, a root list's with `schema.types.root_page`);
the resolver and the compiler (`schema.compiled.registry`) apply the same function to the
same arguments. An argument reaches these functions as a Python value or as graphql-core
coerces it (an enum by its value or as the enum, an input object as a dict by GraphQL
names or as the Strawberry input): each function reads both alike.
"""

from __future__ import annotations

from typing import Any

from sqlalchemy import Select

from care import candidates, figures, queries, vocabulary
from care.enums import CareTermUse
from care.geography import postcode_district
from care.models import MAX_VISIT_LENGTH
from schema.permissions import MEMBER_TYPES, decode_id
from schema.rows import Filters


def filter_id(global_id: str | None, *type_names: str) -> int | None:
    """As the root `visits` field: an id of the wrong type matches nothing (-1)."""
    if global_id is None:
        return None
    found = decode_id(global_id, *type_names)
    return found if found is not None else -1


def visit_arguments(args: dict[str, Any]) -> dict[str, Any]:
    """A visit list's GraphQL arguments as `care.queries.visit_filters` takes them."""
    statuses = args.get("status")
    return {
        "starts_from": args.get("startsFrom"),
        "starts_before": args.get("startsBefore"),
        "statuses": [getattr(s, "value", s) for s in statuses] if statuses else None,
        "cluster_id": filter_id(args.get("clusterId"), "Cluster"),
        "pa_id": filter_id(args.get("paId"), "PersonalAssistant", *MEMBER_TYPES),
        "service_user_id": filter_id(args.get("serviceUserId"), "ServiceUser", *MEMBER_TYPES),
    }


def visit_filters(stmt: Select, args: dict[str, Any], prefix: str) -> Select:
    return queries.visit_filters(stmt, **visit_arguments(args), prefix=prefix)


def range_arguments(args: dict[str, Any]) -> dict[str, Any]:
    return {"starts_from": args.get("startsFrom"), "starts_before": args.get("startsBefore")}


def range_filter(stmt: Select, args: dict[str, Any], prefix: str) -> Select:
    return queries.availability_range(stmt, **range_arguments(args), prefix=prefix)


# A person's visits: overlapping a time range, in some statuses.
VISITS = Filters(("startsFrom", "startsBefore", "status"), visit_filters, visit_arguments)
# A PA's availability: overlapping a time range.
AVAILABILITY = Filters(("startsFrom", "startsBefore"), range_filter, range_arguments)


def _value(given: Any) -> Any:
    """An enum argument's stored value (graphql-core may give the value itself)."""
    return getattr(given, "value", given)


def _values(given: Any) -> list[Any] | None:
    """A list of enums' stored values; None for no list or an empty one (no filter)."""
    return [_value(one) for one in given] if given else None


# --- the root lists -------------------------------------------------------------------


def cluster_arguments(args: dict[str, Any]) -> dict[str, Any]:
    """`clusters(localAuthority:, kind:, status:)` as `care.queries.cluster_filters`
    takes them."""
    return {
        "la_code": args.get("localAuthority"),
        "kind": _value(args.get("kind")),
        "status": _value(args.get("status")),
    }


def cluster_filters(stmt: Select, args: dict[str, Any], prefix: str) -> Select:
    return queries.cluster_filters(stmt, **cluster_arguments(args), prefix=prefix)


def member_arguments(args: dict[str, Any]) -> dict[str, Any]:
    """The member list's arguments as `care.queries.member_filters` takes them."""
    return {
        "membership_class": _value(args.get("membershipClass")),
        "active": args.get("active"),
        "name_pattern": queries.name_pattern(args.get("nameContains")),
    }


def member_filters(stmt: Select, args: dict[str, Any], prefix: str) -> Select:
    return queries.member_filters(stmt, **member_arguments(args), prefix=prefix)


def root_visit_arguments(args: dict[str, Any]) -> dict[str, Any]:
    """The root visit list's arguments: a visit list's (`visit_arguments`) and the bounds
    on the start (`care.queries.visit_start_bounds`)."""
    values = visit_arguments(args)
    if values["starts_from"] is not None:
        values["earliest_start"] = values["starts_from"] - MAX_VISIT_LENGTH
    values["latest_start"] = values["starts_before"]
    return values


def root_visit_filters(stmt: Select, args: dict[str, Any], prefix: str) -> Select:
    """The root list's filters, and its bounds on the start."""
    values = visit_arguments(args)
    stmt = queries.visit_filters(stmt, **values, prefix=prefix)
    return queries.visit_start_bounds(stmt, **values, prefix=prefix)


def root_availability_arguments(args: dict[str, Any]) -> dict[str, Any]:
    """The root availability list's arguments (`care.queries.availability_range` and
    `availability_filters`)."""
    return {
        **range_arguments(args),
        "pa_id": filter_id(args.get("paId"), "PersonalAssistant", *MEMBER_TYPES),
        "pool_id": filter_id(args.get("poolId"), "Pool"),
    }


def root_availability_filters(stmt: Select, args: dict[str, Any], prefix: str) -> Select:
    values = root_availability_arguments(args)
    stmt = queries.availability_range(
        stmt, values["starts_from"], values["starts_before"], prefix=prefix
    )
    return queries.availability_filters(
        stmt, pa_id=values["pa_id"], pool_id=values["pool_id"], prefix=prefix
    )


def absence_arguments(args: dict[str, Any]) -> dict[str, Any]:
    """The absence list's arguments with a parameter each (`includeCancelled`, a boolean,
    is in the statement's shape instead: `care.queries.absence_filters`)."""
    return {
        **range_arguments(args),
        "pa_id": filter_id(args.get("paId"), "PersonalAssistant", *MEMBER_TYPES),
    }


def absence_filters(stmt: Select, args: dict[str, Any], prefix: str) -> Select:
    return queries.absence_filters(
        stmt,
        **absence_arguments(args),
        include_cancelled=bool(args.get("includeCancelled")),
        prefix=prefix,
    )


def cover_request_arguments(args: dict[str, Any]) -> dict[str, Any]:
    """The cover request list's arguments as `care.queries.cover_request_filters` takes
    them."""
    return {
        "cluster_id": filter_id(args.get("clusterId"), "Cluster"),
        "statuses": _values(args.get("status")),
        "visit_starts_from": args.get("visitStartsFrom"),
    }


def cover_request_filters(stmt: Select, args: dict[str, Any], prefix: str) -> Select:
    return queries.cover_request_filters(stmt, **cover_request_arguments(args), prefix=prefix)


def _input_field(given: Any, graphql_name: str, python_name: str) -> Any:
    """A field of an input object: by GraphQL name in graphql-core's dict, by Python name
    on the Strawberry input."""
    if isinstance(given, dict):
        return given.get(graphql_name)
    return getattr(given, python_name)


def cover_exchange_arguments(args: dict[str, Any]) -> dict[str, Any]:
    """The root exchange list's `filter` as `care.queries.cover_exchange_filters` takes
    it; an unknown partnership id matches nothing (-1)."""
    given = args.get("filter")
    if given is None:
        return {"side": None, "status": None, "partnership_id": None}
    partnership = _input_field(given, "partnershipId", "partnership_id")
    return {
        "side": _value(_input_field(given, "side", "side")),
        "status": _value(_input_field(given, "status", "status")),
        "partnership_id": (
            None if partnership is None else decode_id(partnership, "Partnership") or -1
        ),
    }


def cover_exchange_filters(stmt: Select, args: dict[str, Any], prefix: str) -> Select:
    return queries.cover_exchange_filters(stmt, **cover_exchange_arguments(args), prefix=prefix)


def my_cover_exchange_arguments(args: dict[str, Any]) -> dict[str, Any]:
    """`myCoverExchanges(status:)` (the viewer's own: `care.queries.own_cover_exchanges`)."""
    return {"status": _value(args.get("status"))}


def my_cover_exchange_filters(stmt: Select, args: dict[str, Any], prefix: str) -> Select:
    return queries.cover_exchange_filters(stmt, **my_cover_exchange_arguments(args), prefix=prefix)


def referral_arguments(args: dict[str, Any]) -> dict[str, Any]:
    """`referrals(localAuthority:, district:, status:)` as `care.queries.referral_filters`
    takes them. The district is normalised here, once per request for both paths (the
    resolver's statement and the compiled statement's parameter): case and spaces are
    ignored, and a value that is no district becomes "", which matches nothing."""
    district = args.get("district")
    return {
        "la_code": args.get("localAuthority"),
        "district": None if district is None else postcode_district(district) or "",
        "status": _value(args.get("status")),
    }


def referral_filters(stmt: Select, args: dict[str, Any], prefix: str) -> Select:
    return queries.referral_filters(stmt, **referral_arguments(args), prefix=prefix)


def care_term_arguments(args: dict[str, Any]) -> dict[str, Any]:
    """`careTerms(use:, includeInactive:, needsReview:)` as `care.vocabulary.term_filters`
    takes them."""
    return {
        "need_only": _value(args.get("use")) == CareTermUse.NEED,
        "include_inactive": bool(args.get("includeInactive")),
        "needs_review": args.get("needsReview"),
    }


def care_term_filters(stmt: Select, args: dict[str, Any], prefix: str) -> Select:
    return vocabulary.term_filters(stmt, **care_term_arguments(args))


def continuity_arguments(args: dict[str, Any]) -> dict[str, Any]:
    """`serviceUserContinuity(clusterId:)` as `care.figures.continuity_filters` takes it:
    an id that is no cluster's matches nothing (-1), as an unknown cluster."""
    return {"cluster_id": filter_id(args.get("clusterId"), "Cluster")}


def continuity_filters(stmt: Select, args: dict[str, Any], prefix: str) -> Select:
    return figures.continuity_filters(stmt, **continuity_arguments(args), prefix=prefix)


def cover_gap_arguments(args: dict[str, Any]) -> dict[str, Any]:
    """`coverGaps(clusterId:)` as `care.candidates.cover_gaps_filter` takes it: an id that
    does not decode, or of another type, matches nothing (-1), an empty list as before."""
    cluster_id = filter_id(args.get("clusterId"), "Cluster")
    return {"cluster_id": -1 if cluster_id is None else cluster_id}


def cover_gap_filters(stmt: Select, args: dict[str, Any], prefix: str) -> Select:
    return candidates.cover_gaps_filter(stmt, **cover_gap_arguments(args), prefix=prefix)


def no_parameters(args: dict[str, Any]) -> dict[str, Any]:
    """Filters whose arguments are all booleans and enums: their values are in the
    statement's shape (the plan cache's variable shape), and none is a parameter."""
    return {}


CLUSTERS = Filters(("localAuthority", "kind", "status"), cluster_filters, cluster_arguments)
MEMBERS = Filters(("membershipClass", "active", "nameContains"), member_filters, member_arguments)
ROOT_VISITS = Filters(
    ("startsFrom", "startsBefore", "status", "clusterId", "paId", "serviceUserId"),
    root_visit_filters,
    root_visit_arguments,
)
ROOT_AVAILABILITY = Filters(
    ("paId", "poolId", "startsFrom", "startsBefore"),
    root_availability_filters,
    root_availability_arguments,
)
ABSENCES = Filters(
    ("paId", "startsFrom", "startsBefore", "includeCancelled"), absence_filters, absence_arguments
)
COVER_REQUESTS = Filters(
    ("clusterId", "status", "visitStartsFrom"), cover_request_filters, cover_request_arguments
)
COVER_EXCHANGES = Filters(("filter",), cover_exchange_filters, cover_exchange_arguments)
MY_COVER_EXCHANGES = Filters(("status",), my_cover_exchange_filters, my_cover_exchange_arguments)
REFERRALS = Filters(("localAuthority", "district", "status"), referral_filters, referral_arguments)
CARE_TERMS = Filters(("use", "includeInactive", "needsReview"), care_term_filters, no_parameters)
CONTINUITY = Filters(("clusterId",), continuity_filters, continuity_arguments)
COVER_GAPS = Filters(("clusterId",), cover_gap_filters, cover_gap_arguments)
