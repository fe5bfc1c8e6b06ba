"""The care domain: models and the services that hold the rules. No HTTP, no GraphQL."""
