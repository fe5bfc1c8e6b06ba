"""Root mutation type, merged from one class per area."""

import strawberry

from schema.mutations.clusters import ClusterMutations


@strawberry.type
class Mutation(ClusterMutations):
    pass


__all__ = ["Mutation"]
