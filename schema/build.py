"""Assemble the schema with its protections and caches."""

from __future__ import annotations

from dataclasses import dataclass
from functools import cache
from typing import Any

import strawberry
from strawberry.extensions import (
    AddValidationRules,
    MaxAliasesLimiter,
    MaxTokensLimiter,
    ParserCache,
    QueryDepthLimiter,
    SchemaExtension,
    ValidationCache,
)
from strawberry.schema.config import StrawberryConfig

from schema.context import DEFAULT_PAGE_SIZE, Context
from schema.error_codes import CoopSchema
from schema.limits import InputBounds, QueryCostLimiter
from schema.mutations import Mutation
from schema.permissions import check_declared
from schema.query import Query
from schema.scalars import SCALAR_MAP
from schema.subscriptions import Subscription
from schema.types import Carer, CoopMember, PersonalAssistant, ServiceUser

# isort: split
# Only after schema.mutations: schema.candidates reaches schema.feed, which must not load
# before it (schema.feed and schema.mutations import each other).
from schema.candidates import LocalCoverCandidate, PartnerCoverCandidate
from schema.compiled import CompiledReads  # its registry reads schema.query's root lists


class StatementCount(SchemaExtension):
    """Reports the SQL statements a request ran in `extensions.sqlStatements`, to admins
    only (operators use it to check that query counts stay flat)."""

    def get_results(self) -> dict[str, int]:
        ctx = self.execution_context.context
        if isinstance(ctx, Context) and ctx.viewer.is_admin:
            return {"sqlStatements": ctx.statements}
        return {}


@dataclass(frozen=True)
class SchemaOptions:
    max_depth: int = 12
    max_aliases: int = 15
    max_tokens: int = 2000
    max_cost: int = 5000
    default_page_size: int = DEFAULT_PAGE_SIZE
    debug: bool = False


def create_schema(**options: Any) -> strawberry.Schema:
    """The schema with its limits. Built once per set of options and process: Strawberry's
    relay `node` field cannot be converted into a second schema."""
    return _build(SchemaOptions(**options))


@cache
def _build(o: SchemaOptions) -> strawberry.Schema:
    # The depth and alias limiters are validation rules whose classes are created per
    # limiter instance; build them once so the validation cache (keyed by the rules) hits.
    check_declared(Query, Mutation, Subscription)  # deny by default: no field without a rule
    rules = [
        *QueryDepthLimiter(max_depth=o.max_depth).validation_rules,
        *MaxAliasesLimiter(max_alias_count=o.max_aliases).validation_rules,
    ]
    return CoopSchema(
        query=Query,
        mutation=Mutation,
        subscription=Subscription,
        types=[
            ServiceUser,
            PersonalAssistant,
            Carer,
            CoopMember,
            LocalCoverCandidate,
            PartnerCoverCandidate,
        ],
        extensions=[
            lambda: MaxTokensLimiter(max_token_count=o.max_tokens),
            lambda: ParserCache(maxsize=256),  # the caches are module-level: they span requests
            lambda: AddValidationRules(rules),
            lambda: ValidationCache(maxsize=256),
            InputBounds,  # before the cost: a refused input is not costed
            lambda: QueryCostLimiter(max_cost=o.max_cost, default_page_size=o.default_page_size),
            # After every limit: a refused operation never reaches it.
            CompiledReads,
            StatementCount,
        ],
        config=StrawberryConfig(disable_field_suggestions=not o.debug, scalar_map=SCALAR_MAP),
    )
