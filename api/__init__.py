"""The FastAPI application, its settings, database plumbing, authentication and CLI."""
