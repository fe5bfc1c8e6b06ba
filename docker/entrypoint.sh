#!/bin/sh
# The image's entrypoint: check the configuration, then run the command (by default
# `coopnet serve`) as PID 1's replacement, so that it receives SIGTERM itself.
#
# Without DATABASE_URL, `coopnet` would start an embedded PostgreSQL inside the container,
# whose data dies with it unless /data is a volume: only when asked for (EMBEDDED_DATABASE=1).
set -eu

if [ -z "${DATABASE_URL:-}" ]; then
    case "${EMBEDDED_DATABASE:-}" in
        1 | true | yes)
            echo "coopnet: DATABASE_URL is not set; EMBEDDED_DATABASE=${EMBEDDED_DATABASE}:" \
                "using an embedded PostgreSQL under ${DATA_DIR:-/data}/pg" \
                "(mount a volume there to keep it)." >&2
            ;;
        *)
            echo "coopnet: DATABASE_URL is not set. Give the PostgreSQL 15+ to use," \
                "e.g. -e DATABASE_URL=postgresql://user:pass@db:5432/coopnet, or set" \
                "EMBEDDED_DATABASE=1 for an embedded database inside the container" \
                "(for trying the image only)." >&2
            exit 64
            ;;
    esac
fi

exec "$@"
