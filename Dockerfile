# Multi-stage build: wheels in a builder, a slim non-root runtime that migrates and serves.
# Run against an external PostgreSQL 15+:
#   docker build -t coopnet .
#   docker run -p 8000:8000 -e DATABASE_URL=postgresql://user:pass@db:5432/coopnet \
#     -v /srv/coopnet/keys:/keys -e JWT_PRIVATE_KEY_FILE=/keys/jwt-ed25519.pem coopnet
FROM python:3.11-slim AS builder
WORKDIR /src
RUN pip install --no-cache-dir --upgrade pip
COPY pyproject.toml README.md alembic.ini ./
COPY api api
COPY care care
COPY federation federation
COPY migrations migrations
COPY schema schema
RUN pip wheel --no-cache-dir --wheel-dir /wheels .

FROM python:3.11-slim
ENV PYTHONDONTWRITEBYTECODE=1 PYTHONUNBUFFERED=1 DATA_DIR=/data LOG_FORMAT=json HOST=0.0.0.0
RUN useradd --system --uid 10001 --home-dir /data --create-home coopnet
COPY --from=builder /wheels /wheels
RUN pip install --no-cache-dir /wheels/*.whl && rm -rf /wheels
USER coopnet
WORKDIR /data
EXPOSE 8000
HEALTHCHECK --interval=30s --timeout=3s CMD python -c "import urllib.request,sys; sys.exit(urllib.request.urlopen('http://127.0.0.1:8000/healthz').status != 200)"
# `coopnet serve` applies migrations, then runs uvicorn with proxy headers on.
CMD ["sh", "-c", "coopnet db upgrade && exec coopnet serve --forwarded-allow-ips \"${FORWARDED_ALLOW_IPS:-*}\""]
