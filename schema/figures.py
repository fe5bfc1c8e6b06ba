"""Figures the co-op needs: continuity and cover, for coordinators and admins.

Thin resolvers over `care.figures`: each root field runs one SQL statement, whatever the
number of clusters or service users, and builds its objects from the rows. Continuity is
declared once for both read paths (`schema.types.root_list`, `ContinuityFigures`)."""

from __future__ import annotations

import datetime as dt
from typing import Annotated, Any

import strawberry
from graphql import GraphQLError
from sqlalchemy import Row

from care import figures
from care.errors import DomainError
from care.viewer import Viewer
from schema import filters
from schema.context import Limits
from schema.permissions import MANAGING, decode_id, guard
from schema.rows import REQUIRED, Argument, Parameters, from_row
from schema.types import (
    LISTED,
    Cluster,
    ContinuityFigures,
    cluster_from_row,
    root_list,
)


@strawberry.type(
    description=(
        "Cover and delivery figures of one cluster over a half-open period [from, to). "
        "Cover requests count by when they were opened, visits by when they start; a "
        "cluster's service users are those in the cluster."
    )
)
class ClusterFigures:
    cluster: Cluster = strawberry.field(description="The cluster.")
    from_: dt.datetime = strawberry.field(name="from", description="Start of the period.")
    to: dt.datetime = strawberry.field(description="End of the period (excluded).")
    cover_requests_opened: int = strawberry.field(
        description="Cover requests (any status) for visits of the cluster's service users, "
        "opened in the period."
    )
    cover_requests_filled: int = strawberry.field(
        description="Of the cover requests opened in the period, those now FILLED."
    )
    fill_rate: float | None = strawberry.field(
        description="coverRequestsFilled / coverRequestsOpened; null when none were opened."
    )
    median_time_to_fill_minutes: float | None = strawberry.field(
        description="Median minutes from opening to filling, over the filled requests "
        "counted above; null when none."
    )
    visits_missed: int = strawberry.field(
        description="Visits reported MISSED that start in the period."
    )
    visits_completed: int = strawberry.field(
        description="Visits COMPLETED that start in the period."
    )
    hours_delivered: float = strawberry.field(
        description="Total length in hours of the completed visits counted above."
    )


def _bad_input(error: DomainError) -> GraphQLError:
    return GraphQLError(error.message, extensions={"code": "BAD_USER_INPUT", "field": error.field})


def _cluster_figures_from_row(row: Row[Any]) -> ClusterFigures:
    """Its fields are columns of `care.figures.cluster_figures`, the period's bounds
    included; the cluster is made of the same row's cluster columns."""
    return from_row(ClusterFigures, row, cluster=cluster_from_row(row))


# Both read paths read cluster figures from `care.figures.cluster_figures`.
LISTED["cluster_figures"] = (figures.cluster_figures, _cluster_figures_from_row)


def cluster_figure_values(args: dict[str, Any], viewer: Viewer, limits: Limits) -> dict[str, Any]:
    """`clusterFigures`' arguments as `care.figures.cluster_figures` takes them, worked out
    once per request for both read paths: the period (`care.figures.period`, from the
    viewer's clock when not given), and the ids asked for, decoded, each once in the order
    asked (others than clusters' left out, as unknown ones are). BAD_USER_INPUT for a bad
    period or too many ids. A caller who may not ask (a coordinator's token without a
    member) gets nothing, whatever they ask."""
    if not figures.may_ask(viewer):
        return figures.figure_parameters(figures.Asked([], figures.period(viewer, None, None)))
    try:
        period = figures.period(viewer, args.get("from"), args.get("to"))
    except DomainError as error:
        raise _bad_input(error) from error
    ids: list[int] | None = None
    cluster_ids = args.get("clusterIds")
    if cluster_ids is not None:
        limit = limits.max_page_size
        if len(cluster_ids) > limit:
            raise GraphQLError(
                f"Ask for at most {limit} clusters at once.",
                extensions={"code": "BAD_USER_INPUT", "field": "clusterIds"},
            )
        decoded = (decode_id(g, "Cluster") for g in cluster_ids)
        ids = list(dict.fromkeys(i for i in decoded if i is not None))
    return figures.figure_parameters(figures.Asked(ids, period))


CLUSTER_FIGURES = Parameters(
    ("clusterIds", "from", "to"), cluster_figure_values, figures.cluster_figures
)


@strawberry.type
class FigureQueries:
    # Declared once for both read paths (`schema.types.root_list` with `parameters`): the
    # resolver and the compiled path read `care.figures.cluster_figures`, with the values
    # `cluster_figure_values` works out per request (the compiled path falls back on
    # values it refuses, so the error is the resolver's).
    cluster_figures = root_list(
        "cluster_figures",
        ClusterFigures,
        order=(),
        parameters=CLUSTER_FIGURES,
        arguments=(
            Argument(
                "cluster_ids",
                Annotated[
                    list[strawberry.ID] | None,
                    strawberry.argument(
                        description="The clusters, at most 100; unknown ids and clusters the "
                        "caller may not manage are left out. Not given: all the caller manages."
                    ),
                ],
            ),
            Argument(
                "from_",
                Annotated[
                    dt.datetime | None,
                    strawberry.argument(
                        name="from",
                        description="Start of the period (included); 28 days before `to` when "
                        "not given. Without a UTC offset: London time.",
                    ),
                ],
            ),
            Argument(
                "to",
                Annotated[
                    dt.datetime | None,
                    strawberry.argument(
                        description="End of the period (excluded); now when not given. Without "
                        "a UTC offset: London time."
                    ),
                ],
            ),
        ),
        description=(
            "Cover and delivery figures per cluster, for admins (any cluster) and "
            "coordinators (the clusters they support). Without `clusterIds`: every cluster "
            "the caller may manage, by id; with it: those of them asked for, in the order "
            "asked, each once (others are left out, as unknown ones are). The period is "
            "[from, to): by default the 28 days up to now; `to` defaults to now and `from` "
            "to 28 days before `to`. Times without a UTC offset are London time. "
            "`from` must be before `to`, and the period at most 366 days long."
        ),
        extensions=guard(MANAGING),
    )

    # Declared once for both read paths (`schema.types.root_list`): the resolver and the
    # compiled path read `care.figures.continuity_select`, its order and its filter (who
    # may see which cluster is in the select: `care.policy.cluster_managed`).
    service_user_continuity = root_list(
        "service_user_continuity",
        ContinuityFigures,
        order=figures.CONTINUITY_ORDER,
        filters=filters.CONTINUITY,
        arguments=(
            Argument(
                "cluster_id",
                Annotated[
                    strawberry.ID,
                    strawberry.argument(
                        description="The cluster. An unknown one, or one the caller does not "
                        "manage, gives an empty list."
                    ),
                ],
                REQUIRED,
            ),
        ),
        description=(
            "Continuity of care for every service user of a cluster, by member id, over the "
            "28 days up to now. For admins and the cluster's coordinator; an unknown cluster "
            "or one the caller does not support gives an empty list."
        ),
        extensions=guard(MANAGING),
    )
