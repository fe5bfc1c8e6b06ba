"""The compiled read path: a query operation answered by one SQL statement that builds the
response's JSON in PostgreSQL (docs/architecture.md, "The compiled read path")."""

from schema.compiled.extension import CompiledReads

__all__ = ["CompiledReads"]
