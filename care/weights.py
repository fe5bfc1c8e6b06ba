"""The weights of a cover candidate's score: their defaults, and the rule by which a
co-op's own (`coop.cover_weights`, JSON by name) override them.

The rule is SQL, and every reader runs it: the candidate statements (`care.candidates`,
which rank by it) and the co-op's select (`care.queries.coop_select`, which both read
paths of `Coop.coverRules.weights` read). So the weights shown are the weights in force.
"""

from __future__ import annotations

import re
from typing import Any

from sqlalchemy import Float, Text, case, cast, func, literal_column
from sqlalchemy.sql.elements import ColumnElement

# By the name a co-op uses in `coop.cover_weights`, which is also the field's GraphQL name
# in `CoverWeights` (tests/schema/test_compiled_reads.py checks they agree).
DEFAULT_WEIGHTS: dict[str, float] = {
    "regularPa": 3.0,
    "continuity": 3.0,
    "sameCluster": 2.0,
    "samePool": 1.0,
    "travel": 1.0,
    "contractHours": 1.0,
    "fairness": 1.0,
}

_NAME = re.compile(r"[A-Za-z]+")


def weight(stored: Any, name: str) -> ColumnElement[float]:
    """The co-op's weight for a part where `stored` (jsonb) sets it to a number, else the
    default: a string, a boolean or null leaves the default in force. A float8. Constants
    are written into the SQL, not bound: a statement holding them needs no parameter."""
    if not _NAME.fullmatch(name):
        raise ValueError(name)
    key = literal_column(f"'{name}'", Text)
    default = DEFAULT_WEIGHTS[name]
    return case(
        (
            func.jsonb_typeof(stored.op("->")(key)) == literal_column("'number'", Text),
            cast(stored.op("->>")(key), Float),
        ),
        else_=literal_column(f"{default!r}::float8", Float),
    )


def column_name(name: str) -> str:
    """The column a select labels a weight with: the Python name of its `CoverWeights`
    field (`regularPa`: `regular_pa`), which both read paths read it by."""
    return re.sub(r"([A-Z])", r"_\1", name).lower()
