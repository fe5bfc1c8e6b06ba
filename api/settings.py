"""Configuration from the environment (see README, "Configuration")."""

from __future__ import annotations

from functools import lru_cache
from pathlib import Path
from urllib.parse import urlsplit

from pydantic import Field, field_validator
from pydantic_settings import BaseSettings, SettingsConfigDict

from federation.addresses import Network, parse_networks

# The most worker processes `coopnet serve` starts: each holds its own database pool.
MAX_WORKERS = 64


class Settings(BaseSettings):
    model_config = SettingsConfigDict(env_prefix="", case_sensitive=False, extra="ignore")

    # Any PostgreSQL 15+; when unset an embedded server is started with data under data_dir.
    database_url: str | None = None
    data_dir: Path = Path("var")
    host: str = "127.0.0.1"
    port: int = 8000
    # Proxies whose X-Forwarded-* headers `serve` trusts (comma-separated, or *).
    forwarded_allow_ips: str = "127.0.0.1"
    debug: bool = False
    log_format: str = "auto"  # auto | json | console
    log_level: str = "INFO"

    # Tokens: EdDSA (Ed25519) keys; generated under data_dir on first start when unset.
    jwt_private_key_file: Path | None = None
    jwt_public_key_file: Path | None = None
    jwt_issuer: str = "coopnet"
    jwt_audience: str = "coopnet"
    # Default lifetime of issued tokens (capped per role: api/auth.py, max_ttl).
    jwt_ttl_seconds: int = Field(default=8 * 3600, gt=0, le=30 * 24 * 3600)

    # Request protection
    max_query_depth: int = 12
    max_aliases: int = 15
    max_tokens: int = 2000
    max_query_cost: int = 5000
    max_page_size: int = 100
    max_body_bytes: int = 1_000_000  # a larger request body is refused with HTTP 413
    # Connections each server process may hold (the pool, as many again in overflow).
    db_pool_size: int = 10
    # Answer the query operations the compiler supports with one SQL statement each
    # (docs/architecture.md, "The compiled read path"); false: every field by its resolver.
    compiled_reads: bool = True
    # Worker processes of `coopnet serve` (`--workers` overrides); unset: one per CPU core
    # available to the process, or 1 with `--dev`.
    workers: int | None = Field(default=None, ge=1, le=MAX_WORKERS)

    # Database timeouts (each ends in a coded error, not a hung request): see api/db.py.
    db_statement_timeout_ms: int = 5000
    db_lock_timeout_ms: int = 2000
    db_connect_timeout_seconds: float = 5.0
    db_pool_timeout_seconds: float = 5.0
    # /readyz answers within this, ready or not.
    readiness_timeout_seconds: float = 2.0

    # Live updates (subscriptions): events a subscriber may have queued (one that falls
    # further behind re-reads what it missed from the database), and how often the LISTEN
    # connection is checked (and new events looked for, should a notification be lost).
    event_queue_size: int = Field(default=100, ge=1)
    event_keepalive_seconds: float = Field(default=30.0, gt=0)
    # Live events are kept this long for subscribers that resume `after` a sequence; the
    # hub of each process prunes older ones every `live_event_prune_seconds`.
    live_event_retention_hours: float = Field(default=72.0, gt=0)
    live_event_prune_seconds: float = Field(default=600.0, gt=0)
    # An idle subscription re-checks its token (revoked? member deactivated? expired?) this
    # often; every event re-checks it anyway.
    token_recheck_seconds: float = Field(default=60.0, gt=0)

    # Federation (docs/federation.md): this instance's public base URL as partners reach it
    # (default http://{HOST}:{PORT}); its Ed25519 signing key, created under
    # DATA_DIR/keys/federation on first start unless FEDERATION_KEY_FILE is set; previous
    # public keys still published during a key changeover (comma-separated PEM files).
    public_base_url: str | None = None
    federation_key_file: Path | None = None
    federation_previous_key_files: str = ""
    # A partner signing with a key we do not hold makes us re-read its manifest, at most
    # once per this many seconds per base URL.
    federation_manifest_refetch_seconds: float = Field(default=10.0, ge=0)
    # Partners' availability feeds are pulled this often (seconds; 0: only on `syncPartner`).
    federation_sync_seconds: float = Field(default=60.0, ge=0)
    # Calls to other instances go to public addresses only, and to private ones inside
    # these networks (comma-separated CIDR blocks, e.g. a council's closed network
    # "10.20.0.0/16", or "127.0.0.0/8" for instances sharing one machine): a URL someone
    # names must not make this instance fetch from its own network (federation/addresses.py).
    federation_private_networks: str = ""
    # How to ask the co-op for care, as council directories list it (Open Referral UK,
    # GET /openreferral/services): public contact details, not a member's.
    public_email: str | None = Field(default=None, max_length=200)
    public_phone: str | None = Field(default=None, max_length=40)
    public_website: str | None = Field(default=None, max_length=500)
    # Disclosure control of market figures (docs/market.md): counts of 1 to
    # DISCLOSURE_MIN_PEOPLE - 1 people withheld, others rounded to DISCLOSURE_ROUNDING.
    disclosure_min_people: int = Field(default=8, ge=1, le=100)
    disclosure_rounding: int = Field(default=5, ge=1, le=100)
    # networkMarketReport waits at most this long for each partner co-op's figures.
    market_partner_timeout_seconds: float = Field(default=5.0, gt=0, le=60)

    # The outbox of messages to partner instances (federation/outbox.py): whether this
    # process delivers them too (`coopnet worker` runs a delivery worker on its own), and
    # how failed deliveries are retried before a message is kept as dead.
    outbox_worker: bool = True
    outbox_max_attempts: int = Field(default=12, ge=1, le=100)
    outbox_first_delay_seconds: float = Field(default=2.0, gt=0)
    outbox_max_delay_seconds: float = Field(default=600.0, gt=0)
    outbox_poll_seconds: float = Field(default=5.0, gt=0)
    # A delivery whose worker stopped beating (a killed process) is taken over after this.
    outbox_heartbeat_seconds: float = Field(default=30.0, gt=0)

    # Cover candidates from partner co-ops: each partner's search may take this long
    # before `coverCandidates` answers without it (and says so in `leftOut`).
    cover_source_timeout_seconds: float = Field(default=2.0, gt=0, le=60)

    # Cross-boundary cover (federation/exchange.py): how long a partner's request holds one
    # of our PAs' time unless confirmed (minutes; fractions allowed), and how often holds
    # past their time are expired (seconds; 0: never, e.g. in tests that sweep by hand).
    cover_hold_minutes: float = Field(default=60.0, gt=0, le=7 * 24 * 60)
    exchange_sweep_seconds: float = Field(default=30.0, ge=0)

    # Trusted documents (README, "Persisted operations"): when true, /graphql runs only
    # operations registered with `coopnet operations register`, named by hash; a full
    # `query` is refused. Partner instances' signed calls are not affected.
    trusted_documents_only: bool = False

    # Browser frontends on other origins (comma-separated, or * for any).
    cors_origins: str = ""

    @field_validator("federation_private_networks")
    @classmethod
    def _networks(cls, value: str) -> str:
        parse_networks(value)  # ValueError names the bad block
        return value

    @field_validator("public_base_url")
    @classmethod
    def _absolute_base_url(cls, value: str | None) -> str | None:
        # Partners sign for this URL (@target-uri): it must be exactly what they call.
        if value is None:
            return None
        parts = urlsplit(value)
        if parts.scheme not in ("http", "https") or not parts.netloc:
            raise ValueError("PUBLIC_BASE_URL must be an absolute http(s) URL")
        if parts.query or parts.fragment:
            raise ValueError("PUBLIC_BASE_URL must have no query or fragment")
        return value.rstrip("/")

    @property
    def base_url(self) -> str:
        if self.public_base_url:
            return self.public_base_url.rstrip("/")
        # An IPv6 address is bracketed in a URL (http://[::1]:8000).
        host = f"[{self.host}]" if ":" in self.host else self.host
        return f"http://{host}:{self.port}"

    def served_at(self, host: str | None, port: int | None) -> Settings:
        """These settings with `serve --host/--port` in place of HOST and PORT: the base
        URL derived from them (PUBLIC_BASE_URL unset) must name the address served."""
        return self.model_copy(update={"host": host or self.host, "port": port or self.port})

    @property
    def federation_key_dir(self) -> Path:
        return Path(self.data_dir).resolve() / "keys" / "federation"

    @property
    def federation_previous_key_paths(self) -> list[Path]:
        return [Path(p.strip()) for p in self.federation_previous_key_files.split(",") if p.strip()]

    @property
    def federation_private_network_list(self) -> list[Network]:
        return parse_networks(self.federation_private_networks)

    @property
    def cors_origin_list(self) -> list[str]:
        return [o.strip() for o in self.cors_origins.split(",") if o.strip()]


@lru_cache
def get_settings() -> Settings:
    return Settings()
