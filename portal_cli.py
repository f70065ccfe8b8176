"""The ``portal`` command (SPEC section 5). Every command migrates the schema it needs
first, so each works on an empty database."""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from typing import Annotated, TypeVar

import typer

from core.settings import Settings

app = typer.Typer(
    no_args_is_help=True,
    add_completion=False,
    help="Patient portal onboarding service",
    # Plain click help: the rich one adds a <bool>/<str> column that says nothing.
    rich_markup_mode=None,
)
T = TypeVar("T")


def _with_database(work: Callable[[Settings], Awaitable[T]]) -> T:
    from models.database import connect, disconnect, migrate

    settings = Settings()

    async def run() -> T:
        await migrate(settings.database_url)
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

    from core.logging import configure_logging

    settings = Settings()
    configure_logging(settings)
    if workers > 1 and not os.environ.get("PROMETHEUS_MULTIPROC_DIR"):
        # Several processes: /metrics must sum them (core.metrics). A fresh directory
        # per start, so no dead process's values are counted.
        os.environ["PROMETHEUS_MULTIPROC_DIR"] = tempfile.mkdtemp(prefix="portal-metrics-")
    if workers > 1:
        # Migrate once here, not racing in every worker.
        from models.database import migrate

        asyncio.run(migrate(settings.database_url))
    uvicorn.run(
        "graph.asgi:app",
        host=host,
        port=port,
        workers=workers,
        access_log=False,  # our middleware logs method, path and status, never a query string
        proxy_headers=False,  # client addresses come from PORTAL_TRUSTED_PROXIES only
        log_level="info",
        log_config=None,  # our JSON/console formatter handles uvicorn's lines too
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
) -> None:
    """Create a staff user; prints its token (once) last."""
    from onboarding.admin import create_staff as create

    async def work(_: Settings) -> str:
        return (await create(practice, name))[1]

    try:
        token = _with_database(work)
    except (ValueError, LookupError) as exc:
        typer.echo(f"error: {exc}", err=True)
        raise typer.Exit(2) from exc
    typer.echo("staff token (shown once, store it now):")
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
    """Send queued mail and reminders (the outbox dispatcher).

    Production runs several, with PORTAL_MAIL_DISPATCH_IN_SERVER=false. SIGTERM finishes
    the message in hand and hands the rest back; repeated database failures exit with
    status 3 so a supervisor restarts the worker."""
    import signal

    from core.background import every
    from core.logging import configure_logging
    from mail.dispatcher import Dispatcher, DispatcherBroken
    from onboarding.delivery import record_delivery_outcome
    from onboarding.reminders import send_due_reminders

    async def work(settings: Settings) -> None:
        configure_logging(settings)
        dispatcher = Dispatcher(
            settings,
            on_outcome=record_delivery_outcome,
            max_failures=settings.mail_worker_max_db_failures,
        )
        stop = asyncio.Event()
        loop = asyncio.get_running_loop()
        for sig in (signal.SIGTERM, signal.SIGINT):
            loop.add_signal_handler(sig, stop.set)
        if once:
            dispatcher.stopping = stop
            reminded = await send_due_reminders(settings)
            stats = await dispatcher.drain()
            typer.echo(
                f"sent {stats.sent}, retried {stats.retried}, failed {stats.failed},"
                f" reminders {reminded}"
            )
            return
        await asyncio.gather(
            dispatcher.run_forever(stop),
            every(60, lambda: send_due_reminders(settings), stop, "reminders"),
        )

    try:
        _with_database(work)
    except DispatcherBroken as exc:
        typer.echo(f"mail worker stopping: {exc}", err=True)
        raise typer.Exit(3) from exc


def main() -> None:
    app()


if __name__ == "__main__":
    main()
