"""The arguments of the lists, as both read paths apply them: each list's GraphQL
arguments (by GraphQL name) become the named parameters of `care.queries`' filters.

A nested page declares its filters once (`schema.rows.Filters`, on the Strawberry field:
`schema.types.paged`); the resolver and the compiler (`schema.compiled.registry`) apply
the same function to the same arguments.
"""

from __future__ import annotations

from typing import Any

from sqlalchemy import Select

from care import queries
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
