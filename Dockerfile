# Multi-stage build: wheels in a builder, a slim non-root runtime that migrates and serves.
# The build context is an allowlist (.dockerignore): no .git, .venv, var/ or keys.
# Run against an external PostgreSQL 15+ (README, "Against an external PostgreSQL, and in
# Docker", says how to make the Ed25519 key):
#   docker build -t coopnet .
#   docker run --init -p 8000:8000 -e DATABASE_URL=postgresql://user:pass@db:5432/coopnet \
#     -v /srv/coopnet/keys:/keys:ro -e JWT_PRIVATE_KEY_FILE=/keys/jwt-ed25519.pem coopnet
# Without DATABASE_URL the container refuses to start unless EMBEDDED_DATABASE=1.
# GraphiQL's files from the npm registry, at the versions package-lock.json pins; the
# image serves them itself (api/graphiql_page.py), as `make install` does.
FROM node:20-slim AS graphiql
WORKDIR /graphiql
COPY api/graphiql/package.json api/graphiql/package-lock.json ./
RUN npm ci --no-audit --no-fund --loglevel=error

FROM python:3.11-slim AS builder
WORKDIR /src
RUN pip install --no-cache-dir --upgrade pip
COPY pyproject.toml README.md alembic.ini ./
COPY api api
COPY care care
COPY federation federation
COPY migrations migrations
COPY schema schema
COPY --from=graphiql /graphiql/node_modules api/graphiql/node_modules
RUN pip wheel --no-cache-dir --wheel-dir /wheels .

FROM python:3.11-slim
ENV PYTHONDONTWRITEBYTECODE=1 PYTHONUNBUFFERED=1 DATA_DIR=/data LOG_FORMAT=json \
    HOST=0.0.0.0 PORT=8000 FORWARDED_ALLOW_IPS=*
RUN useradd --system --uid 10001 --home-dir /data --create-home coopnet
COPY --from=builder /wheels /wheels
RUN pip install --no-cache-dir /wheels/*.whl && rm -rf /wheels
COPY --chmod=0755 docker/entrypoint.sh /usr/local/bin/coopnet-entrypoint
USER coopnet
WORKDIR /data
EXPOSE 8000
# The port the server listens on (PORT), not a fixed one.
HEALTHCHECK --interval=30s --timeout=3s CMD ["python", "-c", "import os, sys, urllib.request; sys.exit(urllib.request.urlopen('http://127.0.0.1:%s/healthz' % os.environ.get('PORT', '8000'), timeout=2).status != 200)"]
ENTRYPOINT ["coopnet-entrypoint"]
# `coopnet serve` applies migrations, then runs uvicorn trusting X-Forwarded-* from
# FORWARDED_ALLOW_IPS, one worker process per CPU the container may use (WORKERS to set
# another number); SIGTERM (docker stop) shuts it down gracefully.
CMD ["coopnet", "serve"]
