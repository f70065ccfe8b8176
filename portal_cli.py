"""The ``portal`` command (SPEC section 5). Every command migrates the schema it needs
first, so each works on an empty database."""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from typing import Annotated, TypeVar

import typer

from core.settings import Settings

app = typer.Typer(
    no_args_is_help=True, add_completion=False, help="Patient portal onboarding service"
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
    host: Annotated[str, typer.Option(help="Interface to bind")] = "127.0.0.1",
    port: Annotated[int, typer.Option(help="Port to bind")] = 8000,
    workers: Annotated[int, typer.Option(help="uvicorn worker processes")] = 1,
) -> None:
    """Serve GraphQL at /graphql (GraphiQL in development)."""
    import uvicorn

    settings = Settings()
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
    )


@app.command("migrate")
def migrate_command() -> None:
    """Create or upgrade the database schema."""
    _with_database(lambda settings: asyncio.sleep(0))
    typer.echo("schema is up to date")


@app.command("create-practice")
def create_practice(name: Annotated[str, typer.Option(help="The practice's name")]) -> None:
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
    practice: Annotated[int, typer.Option(help="Practice id")],
    name: Annotated[str, typer.Option(help="The staff member's name")],
    admin: Annotated[
        bool, typer.Option("--admin", help="A practice administrator (edits the practice profile)")
    ] = False,
) -> None:
    """Create a staff user; prints the bearer token once, as the last line."""
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


@app.command()
def demo(patients: Annotated[int, typer.Option(help="How many patients")] = 300) -> None:
    """Create a demo practice with patients in mixed states; prints a staff token."""
    from onboarding.demo import build_demo

    token = _with_database(lambda settings: build_demo(settings, patients))
    typer.echo("demo practice ready; staff token (shown once):")
    typer.echo(token)


@app.command("mail-worker")
def mail_worker(
    once: Annotated[bool, typer.Option(help="Send what is due, then exit")] = False,
) -> None:
    """Run the outbox dispatcher and the reminder job on their own (production runs
    several, with PORTAL_MAIL_DISPATCH_IN_SERVER=false)."""
    from core.background import every
    from core.logging import configure_logging
    from mail.dispatcher import Dispatcher
    from onboarding.delivery import record_delivery_outcome
    from onboarding.reminders import send_due_reminders

    async def work(settings: Settings) -> None:
        configure_logging(settings)
        dispatcher = Dispatcher(settings, on_outcome=record_delivery_outcome)
        if once:
            reminded = await send_due_reminders(settings)
            stats = await dispatcher.drain()
            typer.echo(
                f"sent {stats.sent}, retried {stats.retried}, failed {stats.failed},"
                f" reminders {reminded}"
            )
            return
        stop = asyncio.Event()
        await asyncio.gather(
            dispatcher.run_forever(stop),
            every(60, lambda: send_due_reminders(settings), stop, "reminders"),
        )

    _with_database(work)


def main() -> None:
    app()


if __name__ == "__main__":
    main()
