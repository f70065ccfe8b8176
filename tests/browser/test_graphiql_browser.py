"""Issue 10 item 7 in a real browser (Debian's chromium via ``executable_path``): the
development GraphiQL loads with the network cut to this machine (no CDN), runs a staff
query with the token typed into its Headers editor, and after a reload nothing in
localStorage holds that header, while the query text did persist (so storage works, it
only leaves headers out)."""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator
from typing import Any
from urllib.parse import urlsplit

import httpx
import pytest

from graph.app import create_app
from tests.browser.test_cors_browser import CHROMIUM, HAVE_CHROMIUM, LAUNCH_ARGS
from tests.conftest import Api, make_settings
from tests.helpers import create_patient
from tests.live import serve

QUERY = "query Count { onboarding(first: 1) { totalCount } }"
QUERY_EDITOR = '[aria-label="Query Editor"] .CodeMirror'
HEADERS_EDITOR = '[aria-label="Headers"] .graphiql-editor:not(.hidden) .CodeMirror'
LOCAL_HOSTS = {"127.0.0.1", "localhost"}


@pytest.fixture
async def browser() -> AsyncIterator[Any]:
    if not HAVE_CHROMIUM:
        pytest.fail("chromium is not installed (apt-get install chromium; .ci/run does)")
    from playwright.async_api import async_playwright

    async with async_playwright() as pw:
        browser = await pw.chromium.launch(executable_path=CHROMIUM, args=LAUNCH_ARGS)
        yield browser
        await browser.close()


async def set_editor(page: Any, selector: str, text: str) -> None:
    """Replace a CodeMirror editor's text through its own API (typing would meet its
    bracket auto-closing)."""
    await page.eval_on_selector(
        selector, "(element, text) => element.CodeMirror.setValue(text)", text
    )


async def test_graphiql_loads_offline_and_never_stores_the_staff_token(
    database, smtp_server, staff, browser
) -> None:
    settings = make_settings(database, smtp_server[1])
    app = create_app(settings, manage_database=False)
    async with serve(app) as api_url:
        async with httpx.AsyncClient(base_url=api_url) as client:
            await create_patient(Api(client, app, settings), staff.token, lastName="Okafor")

        context = await browser.new_context()
        blocked: list[str] = []
        problems: list[str] = []

        async def only_this_machine(route: Any) -> None:
            # The network as offline as a browser can be made: anything not served by
            # this machine fails (and is recorded, so a CDN reference fails the test).
            if urlsplit(route.request.url).hostname in LOCAL_HOSTS:
                await route.continue_()
            else:
                blocked.append(route.request.url)
                await route.abort("internetdisconnected")

        await context.route("**/*", only_this_machine)
        page = await context.new_page()
        page.on("pageerror", lambda error: problems.append(f"page error: {error}"))
        page.on(
            "console",
            lambda message: problems.append(message.text) if message.type == "error" else None,
        )

        await page.goto(api_url + "/graphql")
        await page.wait_for_selector(QUERY_EDITOR)

        # The token is typed into the Headers editor; the query needs it (staff only).
        await page.click('button[data-name="headers"]')
        await page.click(HEADERS_EDITOR)
        await page.keyboard.type(f'{{"Authorization": "Bearer {staff.token}"}}')
        await set_editor(page, QUERY_EDITOR, QUERY)
        await page.click(".graphiql-execute-button")
        result = page.locator('[aria-label="Result Window"]')
        await result.filter(has_text='"totalCount": 1').wait_for()

        # GraphiQL writes its history at once and its tabs after a short debounce; wait
        # for both, then reload. (With shouldPersistHeaders: false alone, GraphiQL 4
        # still copies the headers into its history: the storage must strip them.)
        # (Polled from here: wait_for_function's requestAnimationFrame polling stalled in
        # headless chromium on a busy machine.)
        persisted = """query => localStorage.getItem("graphiql:queries") !== null
            && (localStorage.getItem("graphiql:tabState") || "").includes(query)"""
        # GraphiQL 4 now and then leaves a run out of its history (seen about one run in
        # four here, the tabs stored but no "graphiql:queries"); running the query again
        # gives it another chance, so the history's headers are always checked.
        deadline = time.monotonic() + 30
        rerun_at = time.monotonic() + 3
        while not await page.evaluate(f"({persisted})", QUERY.split("{")[0].strip()):
            if time.monotonic() >= deadline:
                stored_now = await page.evaluate("() => ({...window.localStorage})")
                raise AssertionError(f"GraphiQL never stored its history and tabs: {stored_now}")
            if time.monotonic() >= rerun_at:
                await page.click(".graphiql-execute-button")
                rerun_at = time.monotonic() + 3
            await asyncio.sleep(0.1)
        await page.reload()
        await page.wait_for_selector(QUERY_EDITOR)
        stored: dict[str, str] = await page.evaluate("() => ({...window.localStorage})")

        assert blocked == [], blocked
        assert problems == [], problems
        everything = "\n".join(f"{key}={value}" for key, value in stored.items())
        assert staff.token not in everything
        assert "authorization" not in everything.lower()
        assert "Bearer" not in everything
        # Storage is in use (the query and its history persisted), headers only are left out.
        assert any(QUERY in value for value in stored.values()), stored.keys()
        assert "graphiql:queries" in stored
        await context.close()
    await app.state.services.background.drain()
    app.state.services.hasher.close()
