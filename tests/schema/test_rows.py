"""Data fields are declared once, on the Strawberry type (schema/rows.py): the resolvers'
objects and the compiler's columns both come from the annotation."""

from __future__ import annotations

import datetime as dt
from decimal import Decimal
from enum import Enum
from types import SimpleNamespace

import pytest
import strawberry
from strawberry import relay
from strawberry.types.base import get_object_definition
from strawberry.utils.str_converters import to_camel_case, to_snake_case

from care import candidates, models, queries, vocabulary
from care import figures as care_figures
from schema import figures as schema_figures
from schema import filters, types
from schema.build import create_schema
from schema.compiled import registry
from schema.compiled.registry import Column, Render, data_columns
from schema.query import Query
from schema.rows import (
    PAGED,
    ROOT_PAGE,
    ROOT_ROWS,
    InRow,
    Kind,
    RootRows,
    ToOne,
    data_fields,
    from_row,
    in_rows,
    lists,
    pages,
    records,
    root_pages,
    root_rows,
)


class Colour(Enum):
    RED = "RED"


@strawberry.type
class Point:
    x: float


@strawberry.type
class Sample(relay.Node):
    id: relay.NodeID[int]
    colour: Colour
    shade: Colour | None
    hours: float
    when: dt.datetime
    day: dt.date | None
    tags: list[str]
    notes: list[str] | None
    colours: list[Colour]
    maybe_colours: list[Colour] | None
    done: bool
    where: Point | None
    owner_id: strawberry.Private[int]

    @strawberry.field
    def computed(self) -> int:
        return 1


ROW = SimpleNamespace(
    id=7,
    colour="RED",
    shade=None,
    hours=Decimal("7.50"),
    when=dt.datetime(2026, 1, 1, tzinfo=dt.UTC),
    day=None,
    tags=None,
    notes=None,
    colours=["RED", "RED"],
    maybe_colours=None,
    done=None,
    owner_id=3,
)


def _strawberry_type(name: str) -> type:
    """The Strawberry class of a type the registry reads (`schema.types`', or a root
    field's own module's: `ClusterFigures`)."""
    found: type = getattr(types, name, None) or getattr(schema_figures, name)
    return found


def test_a_row_becomes_an_object_by_the_annotations() -> None:
    sample = from_row(Sample, ROW, where=Point(x=1.0))
    assert sample.id == 7 and sample.owner_id == 3
    assert sample.colour is Colour.RED and sample.shade is None
    assert sample.hours == 7.5 and type(sample.hours) is float
    assert sample.tags == [] and sample.notes is None  # a null array: [] unless nullable
    # A list of enums: each item from its stored value, as a single enum.
    assert sample.colours == [Colour.RED, Colour.RED]
    assert all(c is Colour.RED for c in sample.colours)
    assert sample.maybe_colours is None
    assert from_row(
        Sample, SimpleNamespace(**{**vars(ROW), "maybe_colours": ["RED"]}), where=None
    ).maybe_colours == [Colour.RED]
    assert sample.done is False
    assert sample.where == Point(x=1.0)


def test_the_compiler_reads_the_same_fields_with_the_same_renderings() -> None:
    kinds = {f.name: (f.graphql_name, f.kind) for f in data_fields(Sample)}
    assert kinds["id"] == (None, Kind.PLAIN)  # the global id is declared apart
    assert kinds["owner_id"] == (None, Kind.PLAIN)  # private
    assert kinds["where"] == ("where", Kind.OBJECT)
    assert "computed" not in kinds
    assert kinds["colour"] == ("colour", Kind.ENUM)
    assert data_columns(Sample) == {
        "colour": Column("colour", Render.ENUM, present=True),
        "shade": Column("shade", Render.ENUM),
        "hours": Column("hours", Render.FLOAT, present=True),
        "when": Column("when", Render.INSTANT, present=True),
        "day": Column("day", Render.DATE),
        "tags": Column("tags", Render.LIST_OR_EMPTY, present=True),
        "notes": Column("notes", Render.LIST),
        "colours": Column("colours", Render.LIST_OR_EMPTY, present=True),
        "maybeColours": Column("maybe_colours", Render.LIST),
        "done": Column("done", present=True),
    }


def test_every_data_field_of_a_compiled_type_compiles() -> None:
    # A plain field added to a type the compiler reads is read by both paths at once.
    for name, fields in registry.FIELDS.items():
        if name == "Query":
            continue
        for field in data_fields(_strawberry_type(name)):
            if field.graphql_name is not None:
                assert field.graphql_name in fields, (name, field.graphql_name)


def test_a_record_field_is_declared_once_for_both_paths() -> None:
    # `schema.types.record`: the resolver follows the declaration the compiler reads.
    declared = records(types.Visit)
    assert set(declared) == {"serviceUser", "pa", "confirmedBy"}
    assert registry.FIELDS["Visit"]["pa"] is declared["pa"]
    assert declared["pa"] == ToOne("member", "pa_id", through=models.Visit.pa_id)
    assert records(types.Cluster)["localAuthority"] == ToOne(
        "local_authority", "la_code", target="gss_code"
    )
    # A referral's council and who recorded it: records, as the cluster's.
    assert records(types.Referral) == {
        "localAuthority": ToOne("local_authority", "la_code", target="gss_code"),
        "recordedBy": ToOne("member", "recorded_by_id"),
    }
    for name in (
        "Cluster",
        "Visit",
        "Absence",
        "CoverRequest",
        "CoverOffer",
        "AvailabilityWindow",
        "CoverExchange",
        "Coop",
        "Referral",
    ):
        for field, spec in records(_strawberry_type(name)).items():
            assert registry.FIELDS[name][field] is spec, (name, field)
            assert spec.source in types.LOADERS and spec.source in registry.SOURCES


def test_a_record_of_the_parent_row_is_declared_once_for_both_paths() -> None:
    # `schema.types.in_row`: the continuity figures' person is the member columns of the
    # same row, built by the members' row builder and compiled as a member over that row.
    declared = in_rows(types.ContinuityFigures)
    spec = InRow("member", through=models.ClusterServiceUser.service_user_id)
    assert declared == {"serviceUser": spec}
    assert registry.FIELDS["ContinuityFigures"]["serviceUser"] is declared["serviceUser"]
    assert spec.source in types.LISTED and spec.source in registry.SOURCES
    assert registry.member_type_of(spec.through) == "ServiceUser"


def test_a_list_field_is_declared_once_for_both_paths() -> None:
    # `schema.types.many`: the resolver's statement and the compiler's link come from it.
    assert set(lists(types.Cluster)) == {"pools"}
    assert set(lists(types.ServiceUser)) == {"carers", "regularPersonalAssistants", "clusters"}
    # A union's branches: a member's clusters, a council's neighbours.
    assert set(lists(types.CoopMember)) == {"clusters"}
    assert lists(types.LocalAuthority)["neighbours"].key == "gss_code"
    for name in (
        "Cluster",
        "Pool",
        "ServiceUser",
        "PersonalAssistant",
        "CoverRequest",
        "Carer",
        "CoopMember",
        "LocalAuthority",
        "CoverExchange",
        "Partnership",
    ):
        declared = lists(_strawberry_type(name))
        assert declared, name
        for field, spec in declared.items():
            compiled = registry.FIELDS[name][field]
            assert isinstance(compiled, registry.ToMany), (name, field)
            assert (compiled.source, compiled.order) == (spec.source, spec.order)
            assert (compiled.descending, compiled.through) == (spec.descending, spec.through)
            # Both paths read the rows from one select.
            assert types.LISTED[spec.source][0] is registry.SOURCES[spec.source].build
    # Every list the compiler reads below the root is a declaration's.
    for name, fields in registry.FIELDS.items():
        if name != "Query":
            for field, compiled in fields.items():
                if isinstance(compiled, registry.ToMany):
                    assert field in lists(_strawberry_type(name)), (name, field, "by hand")


def test_a_page_field_is_declared_once_for_both_paths() -> None:
    # `schema.types.paged`: the resolver's statement and arguments and the compiler's
    # `Page` come from one declaration; a `Page` written by hand in FIELDS, for a declared
    # field or another nested one, is not the declaration's and fails here.
    assert set(pages(types.Cluster)) == {"serviceUsers", "personalAssistants"}
    assert set(pages(types.PersonalAssistant)) == {"availability", "visits"}
    declared_anywhere = 0
    for name, fields in registry.FIELDS.items():
        if name == "Query":
            continue
        declared = pages(_strawberry_type(name))
        for field, spec in fields.items():
            if isinstance(spec, registry.Page):
                assert field in declared, (name, field, "a Page written by hand")
        for field, page in declared.items():
            declared_anywhere += 1
            compiled = fields[field]
            assert compiled is registry.page_of(page), (name, field)
            assert isinstance(compiled, registry.Page)
            assert (compiled.source, compiled.sort, compiled.through) == (
                page.source,
                page.sort,
                page.through,
            )
            own = page.filters.arguments if page.filters is not None else ()
            assert compiled.arguments == registry.PAGE | set(own), (name, field)
            if page.filters is not None:
                assert compiled.filters is page.filters.apply
                assert compiled.values is page.filters.values
            # The resolver takes exactly the arguments the compiler accepts.
            definition = get_object_definition(_strawberry_type(name), strict=True)
            (resolver_field,) = [
                f for f in definition.fields if (f.metadata or {}).get(PAGED) is page
            ]
            assert [a.python_name for a in resolver_field.arguments] == [
                "first",
                "after",
                "last",
                "before",
                *(to_snake_case(a) for a in own),
            ]
            # Both paths read the rows from one select.
            assert types.LISTED[page.source][0] is registry.SOURCES[page.source].build
    assert declared_anywhere == 6


def test_a_root_list_is_declared_once_for_both_paths() -> None:
    # `schema.types.root_page`: the resolver (its arguments, filters, orders and the
    # viewer's own rows) and the compiler's `Page` come from one declaration; a `Page`
    # written by hand under `Query` is not a declaration's and fails here.
    declared = root_pages(Query)
    assert set(declared) == {
        "clusters",
        "members",
        "visits",
        "availability",
        "absences",
        "coverRequests",
        "coverExchanges",
        "myCoverExchanges",
        "myCoverOffers",
        "referrals",
    }
    # The referral list: the district normalised by its filters' values (once per
    # request, for both paths), junk as "", which matches nothing.
    referrals = declared["referrals"]
    assert referrals.filters is filters.REFERRALS and referrals.sort == queries.REFERRAL_SORT
    assert filters.REFERRALS.values({"district": " n12 8qb "})["district"] == "N12"
    assert filters.REFERRALS.values({"district": "ZZ!"})["district"] == ""
    assert filters.REFERRALS.values({})["district"] is None
    roots = registry.FIELDS["Query"]
    for field, compiled in roots.items():
        if isinstance(compiled, registry.Page):
            assert field in declared, (field, "a Page written by hand")
    definition = get_object_definition(Query, strict=True)
    for field, spec in declared.items():
        compiled = roots[field]
        assert compiled is registry.root_page_of(spec), field
        assert isinstance(compiled, registry.Page)
        assert (compiled.source, compiled.sort) == (spec.source, spec.sort)
        assert (compiled.orders, compiled.mine) == (spec.orders, spec.mine)
        if spec.orders is not None:
            assert spec.sort == tuple(next(iter(spec.orders.values()))[0]), field
        if spec.filters is not None:
            assert compiled.filters is spec.filters.apply
            assert compiled.values is spec.filters.values
        else:
            assert compiled.filters is None and compiled.values is None
        # The resolver takes exactly the arguments the compiler accepts, in order.
        (resolver_field,) = [
            f for f in definition.fields if (f.metadata or {}).get(ROOT_PAGE) is spec
        ]
        names = [a.python_name for a in resolver_field.arguments]
        assert names == [a.name for a in spec.arguments], field
        assert compiled.arguments == {to_camel_case(name) for name in names}, field
        assert registry.PAGE <= compiled.arguments, field
        assert ("orderBy" in compiled.arguments) == (spec.orders is not None), field
        # Both paths read the rows from one select.
        assert types.LISTED[spec.source][0] is registry.SOURCES[spec.source].build


def test_the_root_rows_are_declared_once_for_both_paths() -> None:
    # `schema.types.root_list` and `root_record`: the compiler reads the declaration the
    # resolver reads (one select, one order); a `RootRows` written by hand under `Query`
    # is not a declaration's and fails here.
    declared = root_rows(Query)
    assert set(declared) == {
        "coop",
        "localAuthorities",
        "pools",
        "partnerships",
        "careTerms",
        "serviceUserContinuity",
        "clusterFigures",
        "coverGaps",
    }
    assert declared["coop"].one and not declared["pools"].one
    assert not declared["partnerships"].one
    assert declared["pools"].order == (models.Pool.id,)
    assert declared["partnerships"].order == (models.Partnership.id,)
    assert declared["localAuthorities"].order == (models.LocalAuthority.gss_code,)
    # The care vocabulary's order and filters are `care.vocabulary`'s, the filters'
    # arguments the field's.
    terms = declared["careTerms"]
    assert terms.order is vocabulary.TERM_ORDER and terms.filters is filters.CARE_TERMS
    assert terms.filters.arguments == ("use", "includeInactive", "needsReview")
    # Continuity: `care.figures`' select, order and filter; the window's bounds follow
    # each request's clock on the compiled path (`registry.Source.clock`).
    continuity = declared["serviceUserContinuity"]
    assert continuity.order is care_figures.CONTINUITY_ORDER
    assert continuity.filters is filters.CONTINUITY
    assert continuity.filters.arguments == ("clusterId",)
    assert registry.SOURCES[continuity.source].clock is care_figures.continuity_params
    # Cluster figures: `care.figures`' select, with the values `schema.figures` works out
    # per request from the field's arguments (by their GraphQL names: `from`, not `from_`).
    figures = declared["clusterFigures"]
    assert figures.parameters is schema_figures.CLUSTER_FIGURES and figures.order == ()
    assert figures.parameters.rows is care_figures.cluster_figures
    assert [a.graphql_name for a in figures.arguments] == ["clusterIds", "from", "to"]
    assert figures.parameters.arguments == ("clusterIds", "from", "to")
    # Cover gaps: `care.candidates`' select and order, narrowed to the cluster argument.
    gaps = declared["coverGaps"]
    assert gaps.order is candidates.COVER_GAP_ORDER and gaps.filters is filters.COVER_GAPS
    assert gaps.filters.arguments == ("clusterId",) and not gaps.one
    roots = registry.FIELDS["Query"]
    for field, compiled in roots.items():
        if isinstance(compiled, RootRows):
            assert compiled is declared.get(field), (field, "written by hand")
    definition = get_object_definition(Query, strict=True)
    for field, spec in declared.items():
        (resolver_field,) = [
            f for f in definition.fields if (f.metadata or {}).get(ROOT_ROWS) is spec
        ]
        # The resolver takes exactly the arguments the compiler accepts, in order.
        names = [a.python_name for a in resolver_field.arguments]
        assert names == [a.name for a in spec.arguments], field
        graphql_names = {
            a.graphql_name or to_camel_case(a.python_name) for a in resolver_field.arguments
        }
        assert graphql_names == {a.graphql_name for a in spec.arguments}, field
        if spec.filters is None and spec.parameters is None:
            assert names == [], field
        if spec.filters is not None:
            assert set(spec.filters.arguments) <= graphql_names, field
        if spec.parameters is not None:
            assert set(spec.parameters.arguments) <= graphql_names, field
        assert types.LISTED[spec.source][0] is registry.SOURCES[spec.source].build
    # `coverRules`: columns of the co-op's select by its fields' names, as the resolver
    # reads them (`schema.types.coop_from_row`), null where the select masked them.
    rules = registry.FIELDS["Coop"]["coverRules"]
    assert isinstance(rules, registry.Embedded)
    assert rules.present == queries.COVER_RULES_SHOWN
    assert set(rules.fields) == {f.graphql_name for f in data_fields(types.CoverRules)}
    weights = rules.fields["weights"]
    assert isinstance(weights, registry.Embedded)
    assert weights.fields == registry.data_columns(types.CoverWeights)


def test_every_field_of_a_partnership_compiles() -> None:
    # `Partnership`'s fields are columns of `queries.partnership_select` (`keyIds` an array
    # of text) or a declared list (`localAuthorities`, one row per council of the
    # manifest's JSON): none is built in Python, so `partnerships` compiles whatever it
    # asks for.
    graphql = create_schema()._schema.type_map
    for name in ("Partnership", "PartnerLocalAuthority"):
        assert set(graphql[name].fields) == set(registry.FIELDS[name]), name  # type: ignore[union-attr]
    councils = lists(types.Partnership)["localAuthorities"]
    assert (councils.source, councils.parent) == ("partner_local_authority", models.Partnership.id)
    assert registry.FIELDS["Query"]["partnerships"] is root_rows(Query)["partnerships"]
    # The resolvers' loader (`node`, the mutations' payloads) reads the same select.
    assert types.LISTED["partnership"][0] is registry.SOURCES["partnership"].build


def test_every_field_of_cluster_figures_compiles() -> None:
    # Its fields are columns of `care.figures.cluster_figures` (`from` and `to` the bound
    # period, by their GraphQL names), its cluster made of the same row's columns, as the
    # resolver makes it (`schema.figures._cluster_figures_from_row`).
    graphql = create_schema()._schema.type_map
    compiled = registry.FIELDS["ClusterFigures"]
    assert set(graphql["ClusterFigures"].fields) == set(compiled)  # type: ignore[union-attr]
    assert compiled["from"] == Column("from_", Render.INSTANT, present=True)
    assert compiled["to"] == Column("to", Render.INSTANT, present=True)
    assert compiled["fillRate"] == Column("fill_rate", Render.FLOAT)
    cluster = compiled["cluster"]
    assert isinstance(cluster, registry.Embedded) and cluster.fields is registry.FIELDS["Cluster"]
    assert types.LISTED["cluster_figures"][0] is care_figures.cluster_figures


class Spelled(Enum):
    HELD = "held by us"


@strawberry.type
class Odd:
    state: Spelled


@strawberry.type
class OddList:
    states: list[Spelled]


def test_an_enum_whose_values_are_not_its_names_is_refused() -> None:
    # The compiled path writes an enum's stored value between quotes, unescaped: only a
    # GraphQL name may be written so.
    with pytest.raises(RuntimeError, match="Spelled"):
        data_columns(Odd)
    # So is a list of them (a list's items are written as its enum's stored values).
    with pytest.raises(RuntimeError, match="Spelled"):
        data_columns(OddList)
