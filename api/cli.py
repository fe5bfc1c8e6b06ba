"""The `coopnet` command line: serve, db upgrade/downgrade, demo load/network, token
issue/revoke, schema export, federation keys/rotate/retire, operations register."""

from __future__ import annotations

import argparse
import asyncio
import logging
import math
import os
import re
import signal
import sys
from collections.abc import Awaitable, Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any, TypeVar

from api.settings import MAX_WORKERS, Settings, get_settings

if TYPE_CHECKING:  # imported lazily at run time: `coopnet token issue` should start fast
    from sqlalchemy.ext.asyncio import AsyncSession

    from api.auth import TokenService

T = TypeVar("T")

GSS = re.compile(r"E(06|08|09|10)[0-9]{6}")


class ConfigurationError(Exception):
    """This command cannot find the instance it is meant for."""


@contextmanager
def database(settings: Settings, *, create: bool = True) -> Iterator[str]:
    """The database URL to use: DATABASE_URL, or an embedded server under the data dir
    (started here, stopped when the last process using it exits). With create=False an
    embedded server must already exist there (commands that act on an instance)."""
    if settings.database_url:
        yield settings.database_url
        return
    from api.embedded import EmbeddedPostgres

    pgdata = settings.data_dir / "pg"
    if not create and not (pgdata / "PG_VERSION").exists():
        raise ConfigurationError(
            f"No database: DATABASE_URL is not set and there is no embedded database at "
            f"{pgdata.resolve()} (DATA_DIR={settings.data_dir}, resolved from {Path.cwd()}). "
            "Run this command where `coopnet serve` runs, or set DATABASE_URL or DATA_DIR "
            "to the server's."
        )
    server = EmbeddedPostgres(pgdata)
    server.start()
    server.ensure_database("coopnet")
    try:
        yield server.url("coopnet")
    finally:
        server.stop()


def _upgrade(url: str) -> None:
    from api.migrate import upgrade

    upgrade(url)


async def _in_session(url: str, work: Callable[[AsyncSession], Awaitable[T]]) -> T:
    """Run `work` in one session on a short-lived engine and commit."""
    from api.db import create_engine, session_factory

    engine = create_engine(url, pool_size=1)
    try:
        async with session_factory(engine)() as session:
            result = await work(session)
            await session.commit()
            return result
    finally:
        await engine.dispose()


async def _load_demo(session: AsyncSession) -> bool:
    from care.demo import load_demo

    return await load_demo(session)


@dataclass(frozen=True)
class Prepared:
    demo_loaded: bool
    people: list[tuple[str, int]]  # roles and members to suggest tokens for
    max_connections: int  # PostgreSQL's


async def _prepare(session: AsyncSession, dev: bool) -> Prepared:
    """Before serving: the demo (with --dev), and weekly availability topped up to the
    horizon (idempotent)."""
    from sqlalchemy import text

    from care.services.availability import extend_weekly_availability

    loaded = await _load_demo(session) if dev else False
    await extend_weekly_availability(session)
    max_connections = int(await session.scalar(text("SHOW max_connections")) or 0)
    return Prepared(loaded, await _demo_people(session) if dev else [], max_connections)


def connections_warning(workers: int, pool_size: int, max_connections: int) -> str | None:
    """Why the workers could run out of database connections, or None. Each worker may
    hold its pool and as many again in overflow, plus its event listener and its outbox
    worker's connection."""
    most = workers * (2 * pool_size + 2)
    if most <= max_connections:
        return None
    return (
        f"{workers} workers may open up to {most} database connections "
        f"({workers} x (2 x DB_POOL_SIZE {pool_size} + 2)) but PostgreSQL allows "
        f"{max_connections} (max_connections): lower --workers or DB_POOL_SIZE, or raise "
        "max_connections"
    )


async def _check_token_subject(
    session: AsyncSession, role: str, member: int | None, la: str | None
) -> str | None:
    """Why a token for this subject makes no sense, or None when it does."""
    from sqlalchemy import select

    from care.models import LocalAuthority, Member, PaProfile, ServiceUserProfile

    if la is not None:
        found = await session.scalar(
            select(LocalAuthority.gss_code).where(LocalAuthority.gss_code == la)
        )
        if found is None:
            return f"No local authority {la} is known to this instance."
    if member is None:
        return None
    row = (
        await session.execute(
            select(
                Member.membership_class,
                Member.active,
                PaProfile.member_id.label("pa"),
                ServiceUserProfile.member_id.label("su"),
            )
            .outerjoin(PaProfile, PaProfile.member_id == Member.id)
            .outerjoin(ServiceUserProfile, ServiceUserProfile.member_id == Member.id)
            .where(Member.id == member)
        )
    ).first()
    if row is None:
        return f"No member {member}."
    if not row.active:
        return f"Member {member} is not active: no tokens are issued to them."
    expected = {
        "PA": row.pa is not None,
        "SERVICE_USER": row.su is not None,
        "CARER": row.membership_class == "CARER",
        "COORDINATOR": row.membership_class == "WORKER",
        "ADMIN": True,
    }
    if not expected.get(role, True):
        return f"Member {member} cannot act as {role}."
    return None


async def _demo_people(session: AsyncSession) -> list[tuple[str, int]]:
    """A coordinator and a PA to suggest tokens for (the first cluster's)."""
    from sqlalchemy import select

    from care.models import Cluster, ClusterPa

    row = (
        await session.execute(
            select(Cluster.support_worker_id, ClusterPa.pa_id)
            .join(ClusterPa, ClusterPa.cluster_id == Cluster.id)
            .where(Cluster.support_worker_id.is_not(None))
            .order_by(Cluster.id, ClusterPa.pa_id)
            .limit(1)
        )
    ).first()
    if row is None or row.support_worker_id is None:
        return []
    return [("COORDINATOR", row.support_worker_id), ("PA", row.pa_id)]


def _token_service(settings: Settings, *, create_keys: bool = True) -> TokenService:
    """With create_keys=False (token commands), the key must exist: see auth.load_keys."""
    from api.auth import TokenService, load_keys, load_or_create_keys

    return TokenService(
        load_or_create_keys(settings) if create_keys else load_keys(settings),
        settings.jwt_issuer,
        settings.jwt_audience,
        settings.jwt_ttl_seconds,
    )


EXAMPLE_QUERY = """{
  clusters(first: 10) {
    totalCount
    edges { node { id name kind status localAuthority { name }
      serviceUsers(first: 3) { edges { node { name needs } } } } }
  }
}"""


def available_cores() -> int:
    """CPU cores this process may use: its CPU affinity, capped by the CPU quota of its
    cgroup (a container started with `--cpus 2` sees every core of the host)."""
    try:
        cores = len(os.sched_getaffinity(0))
    except AttributeError:  # not on Linux
        cores = os.cpu_count() or 1
    try:
        quota, period = Path("/sys/fs/cgroup/cpu.max").read_text().split()
        if quota != "max":
            cores = min(cores, math.ceil(int(quota) / int(period)))
    except (OSError, ValueError):
        pass  # no cgroup v2 quota to honour
    return max(1, cores)


def worker_count(value: str) -> int:
    """`--workers`: a whole number from 1 to MAX_WORKERS."""
    try:
        count = int(value)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{value!r} is not a whole number") from None
    if not 1 <= count <= MAX_WORKERS:
        raise argparse.ArgumentTypeError(f"must be from 1 to {MAX_WORKERS}, not {count}")
    return count


def serve_workers(args: argparse.Namespace, settings: Settings) -> int:
    """--workers, else WORKERS, else 1 with --dev (one process to read and debug) and one
    per available core otherwise."""
    if args.workers is not None:
        return int(args.workers)
    if settings.workers is not None:
        return settings.workers
    return 1 if args.dev else min(available_cores(), MAX_WORKERS)


# `coopnet serve --workers N`: uvicorn starts each worker as a fresh process that builds
# its own app (`worker_app`); the serving process hands it what it resolved (the settings,
# the database URL, possibly an embedded server's, and --dev) in this variable.
WORKER_ENV = "COOPNET_SERVE_WORKER"


def worker_app() -> Any:
    """The app of one worker process of `coopnet serve --workers N` (a uvicorn factory)."""
    import orjson

    from api.app import create_app
    from api.logging import configure_logging

    handed = orjson.loads(os.environ[WORKER_ENV])
    settings = Settings.model_validate(handed["settings"])
    configure_logging(settings.log_format, settings.log_level, pid=True)
    return create_app(settings, handed["database_url"], dev=bool(handed["dev"]))


def cmd_serve(args: argparse.Namespace, settings: Settings) -> int:
    import uvicorn

    from api.logging import configure_logging
    from care.enums import Role

    workers = serve_workers(args, settings)
    configure_logging(settings.log_format, settings.log_level, pid=workers > 1)
    # From here on (the app, and the settings handed to workers) HOST and PORT are the ones
    # served, so the advertised base URL follows --host/--port unless PUBLIC_BASE_URL is set.
    settings = settings.served_at(args.host, args.port)
    host, port = settings.host, settings.port
    if args.dev:
        # Say what is happening before the slow first steps (creating the embedded
        # database, migrations, the demo), which print nothing of their own.
        embedded = not settings.database_url
        db = "an embedded PostgreSQL" if embedded else "the PostgreSQL at DATABASE_URL"
        print(
            f"Starting coopnet with {db} and the demo co-op on http://{host}:{port}/graphql",
            flush=True,
        )
        if embedded and not (settings.data_dir / "pg" / "PG_VERSION").exists():
            print(
                f"First run: creating the database under {settings.data_dir / 'pg'}, "
                "applying the migrations and loading the demo (under a minute)...",
                flush=True,
            )
    with database(settings) as url:
        # Once for the instance, before any worker starts: migrations, the demo, the
        # availability top-up, and the keys (workers would race to create them).
        _upgrade(url)
        prepared = asyncio.run(_in_session(url, lambda s: _prepare(s, args.dev)))
        _token_service(settings)
        _federation_identity(settings)
        warning = connections_warning(workers, settings.db_pool_size, prepared.max_connections)
        if warning:
            logging.getLogger("coopnet.serve").warning(warning)
        if args.dev:
            token = _token_service(settings).issue(Role.ADMIN)
            print(
                f"\nDemo co-op {'loaded' if prepared.demo_loaded else 'already present'}. "
                f"GraphiQL: http://{host}:{port}/graphql\n\n"
                f"Admin token (8 hours):\n{token}\n\n"
                "Example:\n"
                f"curl -s http://{host}:{port}/graphql -H 'Content-Type: application/json' \\\n"
                f"  -H 'Authorization: Bearer {token}' \\\n"
                '  -d \'{"query": "{ clusters(first: 10) { totalCount edges { node '
                "{ name kind localAuthority { name } } } } }\"}'\n\n"
                f'In GraphiQL, add the header {{"Authorization": "Bearer <token>"}} '
                f"and run:\n{EXAMPLE_QUERY}\n",
                flush=True,
            )
            if prepared.people:
                print(
                    "Tokens for other roles, e.g. a coordinator and a PA of the demo:\n"
                    + "".join(
                        f"  .venv/bin/coopnet token issue --role {role} --member {member}\n"
                        for role, member in prepared.people
                    ),
                    flush=True,
                )
        options: dict[str, Any] = {
            "host": host,
            "port": port,
            "forwarded_allow_ips": args.forwarded_allow_ips or settings.forwarded_allow_ips,
            "log_config": None,
            **server_options(settings),
        }
        if workers == 1:
            from api.app import create_app

            uvicorn.run(create_app(settings, url, dev=args.dev), **options)
        else:
            import orjson

            handed = {"settings": settings.model_dump(mode="json"), "database_url": url}
            os.environ[WORKER_ENV] = orjson.dumps({**handed, "dev": args.dev}).decode()
            # uvicorn's supervisor: it binds the socket, starts the workers (each runs the
            # app's lifespan), replaces one that dies, and stops them all on SIGTERM.
            uvicorn.run("api.cli:worker_app", factory=True, workers=workers, **options)
    return 0


def _federation_identity(settings: Settings) -> None:
    from federation.identity import load_or_create_identity

    load_or_create_identity(
        settings.federation_key_dir,
        settings.federation_key_file,
        settings.federation_previous_key_paths,
    )


def server_options(settings: Settings) -> dict[str, Any]:
    """uvicorn options that bound what a client may send, whoever starts the server: a
    websocket message (a subscription's `connection_init` or `subscribe`) is bounded like
    an HTTP body (MAX_BODY_BYTES); a larger one closes the connection with code 1009."""
    return {"proxy_headers": True, "ws_max_size": settings.max_body_bytes}


def cmd_worker(args: argparse.Namespace, settings: Settings) -> int:
    from api.logging import configure_logging
    from api.worker import run_worker

    configure_logging(settings.log_format, settings.log_level)
    with database(settings, create=False) as url:
        _upgrade(url)
        asyncio.run(run_worker(settings, url))
    return 0


def cmd_db(args: argparse.Namespace, settings: Settings) -> int:
    from api.migrate import downgrade, upgrade

    with database(settings) as url:
        if args.action == "upgrade":
            upgrade(url, args.revision or "head")
        else:
            downgrade(url, args.revision or "-1")
    print(f"database {args.action} done")
    return 0


def cmd_demo(args: argparse.Namespace, settings: Settings) -> int:
    if args.action == "network":
        from api.network import run

        return run(settings, 8001 if args.base_port is None else args.base_port)
    if args.base_port is not None:
        print("error: --base-port only applies to demo network", file=sys.stderr)
        return 2
    with database(settings) as url:
        _upgrade(url)
        loaded = asyncio.run(_in_session(url, _load_demo))
    print("demo co-op loaded" if loaded else "demo co-op already present: nothing changed")
    return 0


def cmd_token(args: argparse.Namespace, settings: Settings) -> int:
    from api.auth import MissingKeyError

    try:
        if args.action == "issue":
            return _token_issue(args, settings)
        return _token_revoke(args, settings)
    except (ConfigurationError, MissingKeyError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2


def _token_issue(args: argparse.Namespace, settings: Settings) -> int:
    import datetime as dt

    from api.auth import check_subject
    from care.enums import Role
    from care.tokens import max_ttl

    if args.role is None:
        print("error: token issue needs --role", file=sys.stderr)
        return 2
    role = Role(args.role)
    if args.jti is not None:
        print("error: --jti only applies to token revoke", file=sys.stderr)
        return 2
    if role not in (Role.ADMIN, Role.LA_ANALYST) and args.member is None:
        print(f"error: --member is required for role {role.value}", file=sys.stderr)
        return 2
    if role is Role.LA_ANALYST:
        if args.la is None or not GSS.fullmatch(args.la):
            print("error: LA_ANALYST needs --la with a GSS code like E09000003", file=sys.stderr)
            return 2
        if args.member is not None:
            print("error: an LA analyst token names no member", file=sys.stderr)
            return 2
    elif args.la is not None:
        print("error: --la only applies to LA_ANALYST", file=sys.stderr)
        return 2
    problem = check_subject(role, args.member, args.la)
    if problem:
        print(f"error: {problem}", file=sys.stderr)
        return 2
    limit = int(max_ttl(role).total_seconds())
    if args.ttl is not None and not 0 < args.ttl <= limit:
        print(
            f"error: --ttl is in seconds, more than 0 and at most {limit} for {role.value}",
            file=sys.stderr,
        )
        return 2
    # The key first: a command run from the wrong directory stops before touching anything.
    tokens = _token_service(settings, create_keys=False)
    with database(settings, create=False) as url:
        problem = asyncio.run(
            _in_session(url, lambda s: _check_token_subject(s, role.value, args.member, args.la))
        )
    if problem:
        print(f"error: {problem}", file=sys.stderr)
        return 2
    issued = tokens.mint(
        role,
        member_id=args.member,
        la_code=args.la,
        ttl=dt.timedelta(seconds=args.ttl) if args.ttl else None,
    )
    # For the operator (stderr): what `token revoke --jti` needs later.
    print(
        f"token id (jti) {issued.ref.jti}, expires {issued.ref.expires_at.isoformat()}",
        file=sys.stderr,
    )
    print(issued.token)
    return 0


def _token_revoke(args: argparse.Namespace, settings: Settings) -> int:
    import datetime as dt
    import uuid

    from care.tokens import LONGEST_TTL

    if (args.jti is None) == (args.member is None):
        print("error: token revoke needs exactly one of --jti or --member", file=sys.stderr)
        return 2
    if args.role is not None or args.la is not None or args.ttl is not None:
        print("error: token revoke takes only --jti or --member", file=sys.stderr)
        return 2
    jti: uuid.UUID | None = None
    if args.jti is not None:
        try:
            jti = uuid.UUID(args.jti)
        except ValueError:
            print(f"error: --jti {args.jti!r} is not a token id (a UUID)", file=sys.stderr)
            return 2
    with database(settings, create=False) as url:
        from care.tokens import revoke_member_tokens, revoke_token

        if jti is not None:
            # The token's own expiry is not known from its id: keep the row as long as
            # any token can live (verify refuses longer-lived ones), then it is pruned.
            until = dt.datetime.now(dt.UTC) + LONGEST_TTL
            token_id = jti
            done = asyncio.run(_in_session(url, lambda s: revoke_token(s, token_id, until)))
            print(f"token {jti} revoked" if done else f"token {jti} was already revoked")
            return 0
        member = args.member
        found = asyncio.run(_in_session(url, lambda s: revoke_member_tokens(s, member)))
    if not found:
        print(f"error: No member {member}.", file=sys.stderr)
        return 2
    print(f"all tokens issued to member {member} until now are revoked")
    return 0


def cmd_schema(args: argparse.Namespace, settings: Settings) -> int:
    from schema import create_schema

    print(create_schema().as_str())
    return 0


def cmd_federation(args: argparse.Namespace, settings: Settings) -> int:
    """The federation keys (docs/federation.md, "Keys and rotation"). Never creates a
    first key: that is the server's job, where it runs."""
    from federation.identity import PREVIOUS, IdentityError, load_or_create_identity, rotate

    key_dir = settings.federation_key_dir
    configured = settings.federation_key_file is not None
    try:
        if not configured and not (key_dir / "current.pem").exists():
            raise IdentityError(
                f"No federation key at {key_dir} (DATA_DIR={settings.data_dir}): run this "
                "where `coopnet serve` runs, or start the server once."
            )
        if args.action == "rotate":
            if configured:
                raise IdentityError(
                    "FEDERATION_KEY_FILE is set: make a new key, point FEDERATION_KEY_FILE at "
                    "it and list the old file in FEDERATION_PREVIOUS_KEY_FILES."
                )
            rotate(key_dir)
        elif args.action == "retire":
            if not args.kid:
                raise IdentityError("retire needs the kid of a previous key.")
            path = key_dir / PREVIOUS / f"{args.kid}.pub.pem"
            if not path.exists():
                raise IdentityError(f"No previous key {args.kid} under {path.parent}.")
            path.unlink()
        identity = load_or_create_identity(
            key_dir, settings.federation_key_file, settings.federation_previous_key_paths
        )
    except IdentityError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    if args.action != "keys":
        print("restart every process of the instance to use the change", file=sys.stderr)
    print(f"current  {identity.kid}")
    for jwk in identity.jwks()[1:]:
        print(f"previous {jwk['kid']}")
    return 0


def cmd_operations(args: argparse.Namespace, settings: Settings) -> int:
    """Register a frontend's persisted operations (README, "Persisted operations"): all
    of the manifest or, if any entry is wrong, none of it."""
    import orjson

    from api.persisted import ManifestError, check_client, check_manifest, read_manifest
    from api.persisted import register as register_entries
    from schema import create_schema

    try:
        check_client(args.client)
        try:
            data = orjson.loads(Path(args.file).read_bytes())
        except OSError as exc:
            raise ManifestError(f"Cannot read {args.file}: {exc.strerror}.") from exc
        except orjson.JSONDecodeError as exc:
            raise ManifestError(f"{args.file} is not JSON: {exc}.") from exc
        entries = read_manifest(data)
        problems = check_manifest(entries, create_schema()._schema)
        if problems:
            for problem in problems:
                print(f"error: {problem}", file=sys.stderr)
            raise ManifestError(
                f"{len(problems)} of {len(entries)} operations refused: nothing registered."
            )
        with database(settings, create=False) as url:
            added, already = asyncio.run(
                _in_session(url, lambda s: register_entries(s, entries, args.client))
            )
    except (ConfigurationError, ManifestError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    print(f"{added} operations registered, {already} already registered")
    return 0


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="coopnet", description=__doc__)
    sub = parser.add_subparsers(dest="command", required=True)

    serve = sub.add_parser("serve", help="run the GraphQL server")
    serve.add_argument(
        "--dev", action="store_true", help="load the demo co-op and print an admin token"
    )
    serve.add_argument("--host")
    serve.add_argument("--port", type=int)
    serve.add_argument(
        "--workers",
        type=worker_count,
        help=f"server processes, 1 to {MAX_WORKERS} (default: WORKERS, else 1 with --dev and "
        "one per available CPU core otherwise)",
    )
    serve.add_argument(
        "--forwarded-allow-ips",
        help="proxies whose X-Forwarded-* headers are trusted (default: FORWARDED_ALLOW_IPS)",
    )
    serve.set_defaults(func=cmd_serve)

    worker = sub.add_parser(
        "worker",
        help="deliver queued messages to partner instances (as `serve` does too)",
    )
    worker.set_defaults(func=cmd_worker)

    db = sub.add_parser("db", help="database migrations")
    db.add_argument("action", choices=["upgrade", "downgrade"])
    db.add_argument(
        "revision", nargs="?", help="target (default: head for upgrade, -1 for downgrade)"
    )
    db.set_defaults(func=cmd_db)

    demo = sub.add_parser(
        "demo",
        help="demo data",
        description="load: the demo co-op into this instance's database; network: three "
        "instances on one embedded PostgreSQL (the demo co-op, a partner next door, a "
        "distant co-op) and a federation walkthrough, until Ctrl-C",
    )
    demo.add_argument("action", choices=["load", "network"])
    demo.add_argument(
        "--base-port",
        type=int,
        help="network: the three instances listen on this port and the next two (default 8001)",
    )
    demo.set_defaults(func=cmd_demo)

    token = sub.add_parser(
        "token",
        help="bearer tokens",
        description="issue: --role [--member] [--la] [--ttl]; revoke: --jti or --member",
    )
    token.add_argument("action", choices=["issue", "revoke"])
    token.add_argument(
        "--role",
        choices=["ADMIN", "COORDINATOR", "PA", "SERVICE_USER", "CARER", "LA_ANALYST"],
    )
    token.add_argument(
        "--member", type=int, help="issue: member id the token speaks for; revoke: all theirs"
    )
    token.add_argument("--la", help="GSS code (LA_ANALYST only)")
    token.add_argument(
        "--ttl",
        type=int,
        help="lifetime in seconds (at most 30 days; 7 days for ADMIN and LA_ANALYST)",
    )
    token.add_argument("--jti", help="revoke: the id of one token (printed when issued)")
    token.set_defaults(func=cmd_token)

    federation = sub.add_parser(
        "federation",
        help="server-to-server keys",
        description="keys: list the published kids; rotate: new current key, the old one "
        "stays published as previous; retire -- KID: stop publishing a previous key",
    )
    federation.add_argument("action", choices=["keys", "rotate", "retire"])
    federation.add_argument(
        "kid",
        nargs="?",
        help="retire: the kid of a previous key (after `--`: a kid may start with -)",
    )
    federation.set_defaults(func=cmd_federation)

    schema = sub.add_parser("schema", help="GraphQL schema")
    schema.add_argument("action", choices=["export"])
    schema.set_defaults(func=cmd_schema)

    operations = sub.add_parser(
        "operations",
        help="persisted operations (trusted documents)",
        description="register FILE: a GraphQL Code Generator persisted-documents manifest "
        "or a Relay persisted-queries file ({sha256 hex: document}); every hash is checked "
        "and every document validated against the schema before anything is stored",
    )
    operations.add_argument("action", choices=["register"])
    operations.add_argument("file", help="the manifest (JSON)")
    operations.add_argument("--client", help="name of the frontend, kept with its operations")
    operations.set_defaults(func=cmd_operations)
    return parser


def _terminate(signum: int, _frame: object) -> None:
    """SIGTERM (process managers, container runtimes) ends the process the way Ctrl-C
    does: with an exception, so `finally` blocks and atexit hooks run and an embedded
    PostgreSQL is stopped. Uvicorn handles SIGTERM itself while serving, shuts down
    gracefully, then raises the signal again: this handler takes it from there."""
    raise SystemExit(0)


def main(argv: list[str] | None = None) -> int:
    signal.signal(signal.SIGTERM, _terminate)
    args = build_parser().parse_args(argv)
    return int(args.func(args, get_settings()) or 0)


if __name__ == "__main__":
    sys.exit(main())
