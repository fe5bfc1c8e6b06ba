"""The Strawberry GraphQL schema."""

from schema.build import create_schema

__all__ = ["create_schema"]
