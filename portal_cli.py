"""The ``portal`` command (SPEC section 5). Every command migrates the schema it needs
first, so each works on an empty database."""

from __future__ import annotations

import asyncio
import os
import sys
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Annotated, TypeVar

import typer

from core.settings import Settings

app = typer.Typer(
    no_args_is_help=True,
    add_completion=False,
    help="Patient portal onboarding service",
    # Plain click help: the rich one adds a <bool>/<str> column that says nothing.
    rich_markup_mode=None,
    # Typer's rich tracebacks print local variables: settings, URLs with passwords.
    pretty_exceptions_enable=False,
)
T = TypeVar("T")


DATABASE_CHECK_SECONDS = 60


class StartupError(Exception):
    """A start-up failure explained in one line that names the setting at fault."""


def load_settings() -> Settings:
    """Settings from the environment, or one line per bad setting (never its value:
    pydantic's own message echoes the input, passwords included) and exit code 2."""
    from pydantic import ValidationError

    try:
        return Settings()
    except ValidationError as exc:
        lines = []
        for error in exc.errors(include_url=False, include_input=False):
            names = [str(part) for part in error.get("loc", ()) if part != "__root__"]
            where = "PORTAL_" + names[0].upper() if names else "settings"
            message = str(error.get("msg", "invalid")).removeprefix("Value error, ")
            lines.append(f"error: {where}: {message}" if names else f"error: {message}")
        raise StartupError("\n".join(lines)) from None


def _secrets(settings: Settings) -> list[str]:
    from urllib.parse import urlsplit

    values = [settings.smtp_password or ""]
    for url in (settings.database_url, settings.redis_url or ""):
        try:
            values.append(urlsplit(url).password or "")
        except ValueError:
            pass
    for key in (settings.secret_key, settings.secret_key_previous):
        if key:
            values.append(key.get_secret_value())
    return [v for v in values if v]


def _describe(exc: BaseException, settings: Settings) -> str:
    """The exception's type and message, with every secret value cut out."""
    text = f"{type(exc).__name__}: {exc}".splitlines()[0][:300]
    for secret in _secrets(settings):
        text = text.replace(secret, "***")
    return text


def _where(url: str) -> str:
    from urllib.parse import urlsplit

    try:
        parts = urlsplit(url)
        host = parts.hostname or ""
        port = f":{parts.port}" if parts.port else ""
    except ValueError:
        return "(unparseable URL)"
    return f"{parts.scheme}://{host}{port}{parts.path}"


async def check_database(settings: Settings) -> None:
    from models.database import migrate

    where = _where(settings.database_url)
    if settings.database_url.startswith("sqlite://") and ":memory:" not in settings.database_url:
        # aiosqlite hangs (rather than fails) on a file it cannot create.
        folder = Path(settings.database_url.removeprefix("sqlite://")).parent
        if not folder.is_dir():
            raise StartupError(
                f"error: PORTAL_DATABASE_URL: the folder of the SQLite file does not exist: "
                f"{folder}"
            )
    try:
        await asyncio.wait_for(migrate(settings.database_url), DATABASE_CHECK_SECONDS)
    except TimeoutError:
        raise StartupError(
            f"error: PORTAL_DATABASE_URL: no answer from the database at {where} within "
            f"{DATABASE_CHECK_SECONDS} s"
        ) from None
    except Exception as exc:  # noqa: BLE001 - every failure becomes one line
        raise StartupError(
            f"error: PORTAL_DATABASE_URL: cannot use the database at {where}: "
            f"{_describe(exc, settings)}"
        ) from None


async def check_redis(settings: Settings) -> None:
    if not settings.redis_url:
        return
    from core.ratelimit import RateLimiter

    try:
        storage = RateLimiter(settings).shared_storage
        ok = await storage.check()
    except Exception as exc:  # noqa: BLE001
        raise StartupError(
            f"error: PORTAL_REDIS_URL: cannot reach Redis at {_where(settings.redis_url)}: "
            f"{_describe(exc, settings)}"
        ) from None
    if not ok:
        raise StartupError(
            f"error: PORTAL_REDIS_URL: Redis at {_where(settings.redis_url)} did not answer"
        )


def _with_database(work: Callable[[Settings], Awaitable[T]]) -> T:
    from models.database import connect, disconnect

    settings = load_settings()

    async def run() -> T:
        await check_database(settings)
        await connect(settings.database_url)
        try:
            return await work(settings)
        finally:
            await disconnect()

    return asyncio.run(run())


@app.command()
def serve(
    host: Annotated[str, typer.Option(help="Interface to bind", metavar="HOST")] = "127.0.0.1",
    port: Annotated[int, typer.Option(help="Port to bind", metavar="PORT")] = 8000,
    workers: Annotated[int, typer.Option(help="uvicorn worker processes", metavar="N")] = 1,
) -> None:
    """Serve GraphQL at /graphql (GraphiQL in development)."""
    import os
    import tempfile

    import uvicorn

    settings = load_settings()
    if workers > 1 and not settings.redis_url:
        # Each worker would keep its own rate budgets: 39 of 60 logins passed a
        # 10/minute limit with 4 workers.
        rule = "PORTAL_REDIS_URL is not set and --workers is above 1 (rate limits per worker)"
        if settings.is_production and not settings.allow_insecure_defaults:
            raise StartupError(
                f"error: {rule}; set PORTAL_REDIS_URL, or PORTAL_ALLOW_INSECURE_DEFAULTS=true"
            )
        typer.echo(f"warning: {rule}", err=True)
    from core.logging import configure_logging

    configure_logging(settings)
    if workers > 1 and not os.environ.get("PROMETHEUS_MULTIPROC_DIR"):
        # Several processes: /metrics must sum them (core.metrics). A fresh directory
        # per start, so no dead process's values are counted.
        os.environ["PROMETHEUS_MULTIPROC_DIR"] = tempfile.mkdtemp(prefix="portal-metrics-")

    async def checks() -> None:
        # Migrate once here, not racing in every worker; a database or Redis that
        # cannot be reached is one line now rather than a traceback per worker.
        await check_database(settings)
        await check_redis(settings)

    asyncio.run(checks())
    uvicorn.run(
        "graph.asgi:app",
        host=host,
        port=port,
        workers=workers,
        access_log=False,  # our middleware logs method, path and status, never a query string
        proxy_headers=False,  # client addresses come from PORTAL_TRUSTED_PROXIES only
        log_level="info",
        log_config=None,  # our JSON/console formatter handles uvicorn's lines too
        # Header and body read deadlines, connection caps per process and per address
        # (read from the PORTAL_* environment in each worker).
        http="graph.transport:PortalHttpProtocol",
        # uvicorn answers 503 itself once this many connections or requests are open.
        limit_concurrency=settings.max_connections,
        timeout_keep_alive=5,
        timeout_graceful_shutdown=int(settings.request_timeout_seconds),
    )


@app.command("migrate")
def migrate_command() -> None:
    """Create or upgrade the database schema."""
    _with_database(lambda settings: asyncio.sleep(0))
    typer.echo("schema is up to date")


@app.command("create-practice")
def create_practice(
    name: Annotated[str, typer.Option(help="The practice's name", metavar="NAME")],
) -> None:
    """Create a practice; prints its id as the last line."""
    from onboarding.admin import create_practice as create

    async def work(_: Settings) -> int:
        return (await create(name)).id

    try:
        practice_id = _with_database(work)
    except ValueError as exc:
        typer.echo(f"error: {exc}", err=True)
        raise typer.Exit(2) from exc
    typer.echo(f"created practice {name!r}")
    typer.echo(str(practice_id))


@app.command("create-staff")
def create_staff(
    practice: Annotated[int, typer.Option(help="Practice id", metavar="ID")],
    name: Annotated[str, typer.Option(help="The staff member's name", metavar="NAME")],
    admin: Annotated[
        bool, typer.Option("--admin", help="A practice administrator (edits the practice profile)")
    ] = False,
) -> None:
    """Create a staff user; prints its token (once) last."""
    from onboarding.admin import create_staff as create

    async def work(_: Settings) -> str:
        return (await create(practice, name, admin=admin))[1]

    try:
        token = _with_database(work)
    except (ValueError, LookupError) as exc:
        typer.echo(f"error: {exc}", err=True)
        raise typer.Exit(2) from exc
    typer.echo("staff token (shown once, store it now):")
    typer.echo(token)


@app.command("list-staff")
def list_staff(
    practice: Annotated[int | None, typer.Option(help="Only this practice")] = None,
) -> None:
    """Staff users with their token's state: issued, expires, last used, revoked."""
    from datetime import timedelta

    from core.clock import utcnow
    from onboarding.admin import list_staff as staff_of

    async def work(settings: Settings) -> list[str]:
        ttl = timedelta(days=settings.staff_token_ttl_days)
        now = utcnow()
        lines = ["id\tpractice\tname\tstate\tissued\texpires\tlast_used"]
        for staff in await staff_of(practice):
            issued = staff.token_issued_at or staff.created_at
            expires = issued + ttl
            state = (
                "revoked" if staff.revoked_at or not staff.active
                else "expired" if expires <= now else "active"
            )
            used = staff.last_used_at
            cells = [
                staff.id,
                staff.practice_id,
                staff.name,
                state,
                issued.isoformat(timespec="seconds"),
                expires.isoformat(timespec="seconds"),
                used.isoformat(timespec="seconds") if used else "never",
            ]
            lines.append("\t".join(str(c) for c in cells))
        return lines

    for line in _with_database(work):
        typer.echo(line)


@app.command("revoke-staff")
def revoke_staff(staff_id: Annotated[int, typer.Option("--id", help="Staff user id")]) -> None:
    """Revoke a staff user's token at once."""
    from onboarding.admin import revoke_staff as revoke

    async def work(_: Settings) -> None:
        await revoke(staff_id)

    try:
        _with_database(work)
    except LookupError as exc:
        typer.echo(f"error: {exc}", err=True)
        raise typer.Exit(2) from exc
    typer.echo(f"revoked the token of staff user {staff_id}")


@app.command("rotate-staff-token")
def rotate_staff_token(
    staff_id: Annotated[int, typer.Option("--id", help="Staff user id")],
) -> None:
    """Issue a new token (printed once, as the last line); the old one stops working."""
    from onboarding.admin import rotate_staff_token as rotate

    async def work(_: Settings) -> str:
        return (await rotate(staff_id))[1]

    try:
        token = _with_database(work)
    except LookupError as exc:
        typer.echo(f"error: {exc}", err=True)
        raise typer.Exit(2) from exc
    typer.echo("new staff token (shown once, store it now; the old one no longer works):")
    typer.echo(token)


@app.command()
def demo(
    patients: Annotated[int, typer.Option(help="How many patients", metavar="N")] = 300,
) -> None:
    """Create a demo practice (every status); prints a token."""
    from onboarding.demo import build_demo

    token = _with_database(lambda settings: build_demo(settings, patients))
    typer.echo("demo practice ready; staff token (shown once):")
    typer.echo(token)


@app.command("mail-worker")
def mail_worker(
    once: Annotated[bool, typer.Option(help="Send what is due, then exit")] = False,
) -> None:
    """Run the outbox dispatcher, the webhook delivery loop and the reminder job on
    their own (production runs several, with PORTAL_MAIL_DISPATCH_IN_SERVER=false).

    SIGTERM finishes the message in hand and hands the rest back; repeated database
    failures exit with status 3 so a supervisor restarts the worker."""
    import signal

    from core.background import every
    from core.logging import configure_logging
    from mail.dispatcher import Dispatcher, DispatcherBroken
    from onboarding.delivery import record_delivery_outcome
    from onboarding.events import configure as configure_events
    from onboarding.expiry import announce_expired_invitations
    from onboarding.reminders import send_due_reminders
    from onboarding.webhook_worker import WebhookWorker

    async def work(settings: Settings) -> None:
        configure_logging(settings)
        configure_events(settings)
        dispatcher = Dispatcher(
            settings,
            on_outcome=record_delivery_outcome,
            max_failures=settings.mail_worker_max_db_failures,
        )
        webhooks = WebhookWorker(settings)
        stop = asyncio.Event()
        loop = asyncio.get_running_loop()
        for sig in (signal.SIGTERM, signal.SIGINT):
            loop.add_signal_handler(sig, stop.set)
        if once:
            dispatcher.stopping = stop
            reminded = await send_due_reminders(settings)
            await announce_expired_invitations()
            stats = await dispatcher.drain()
            attempted = await webhooks.drain()
            await webhooks.close()
            typer.echo(
                f"sent {stats.sent}, retried {stats.retried}, failed {stats.failed},"
                f" reminders {reminded}, webhook attempts {attempted}"
            )
            return
        await asyncio.gather(
            dispatcher.run_forever(stop),
            webhooks.run_forever(stop),
            every(60, lambda: send_due_reminders(settings), stop, "reminders"),
            every(60, announce_expired_invitations, stop, "expiry"),
        )

    try:
        _with_database(work)
    except DispatcherBroken as exc:
        typer.echo(f"mail worker stopping: {exc}", err=True)
        raise typer.Exit(3) from exc


def main() -> None:
    # Everything the service creates (SQLite files, the mail folder and its messages)
    # is owner-only: they hold health data and, until sent, live links.
    os.umask(0o077)
    try:
        app()
    except StartupError as exc:
        typer.echo(str(exc), err=True)
        sys.stdout.flush()
        sys.stderr.flush()
        # Not SystemExit: a driver thread left by the failed connection (aiosqlite on
        # a path it cannot open) is not a daemon and would keep the process alive.
        os._exit(2)


if __name__ == "__main__":
    main()
