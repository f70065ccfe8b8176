"""SPEC 8.1 in a real browser: Debian's chromium, driven by Playwright through
``executable_path`` (no downloaded browser build). A page served from another origin
runs the Onboarding query with a staff token; a page from an origin that is not listed
is refused by the browser itself, because the preflight gets no CORS headers."""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import httpx
import pytest
from starlette.applications import Starlette
from starlette.responses import HTMLResponse
from starlette.routing import Route

from graph.app import create_app
from tests.conftest import Api, make_settings
from tests.helpers import create_patient
from tests.live import serve

CHROMIUM = "/usr/bin/chromium"
HAVE_CHROMIUM = Path(CHROMIUM).exists()
LAUNCH_ARGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
]

ONBOARDING = "query Onboarding { onboarding(first: 10) { totalCount edges { node { lastName } } } }"

FRONT_END = """<!doctype html><title>EMR front end</title>
<script>
async function runOnboarding(api, token, query) {
  try {
    const response = await fetch(api + "/graphql", {
      method: "POST",
      headers: {"Content-Type": "application/json", "Authorization": "Bearer " + token},
      body: JSON.stringify({query}),
    });
    return {ok: true, status: response.status, body: await response.json()};
  } catch (error) {
    return {ok: false, error: String(error)};
  }
}
</script>"""


async def front_end_page(_: Any) -> HTMLResponse:
    return HTMLResponse(FRONT_END)


@pytest.fixture
async def browser() -> AsyncIterator[Any]:
    if not HAVE_CHROMIUM:
        pytest.fail("chromium is not installed (apt-get install chromium; .ci/run does)")
    from playwright.async_api import async_playwright

    async with async_playwright() as pw:
        browser = await pw.chromium.launch(executable_path=CHROMIUM, args=LAUNCH_ARGS)
        yield browser
        await browser.close()


async def test_listed_origin_runs_onboarding_and_unlisted_origin_is_refused(
    database, smtp_server, staff, browser
) -> None:
    front = Starlette(routes=[Route("/", front_end_page)])
    async with serve(front) as allowed_origin, serve(front, host="localhost") as other_origin:
        settings = make_settings(database, smtp_server[1], cors_origins=[allowed_origin])
        app = create_app(settings, manage_database=False)
        async with serve(app) as api_url:
            # Seed through the real API so the browser reads what staff created.
            async with httpx.AsyncClient(base_url=api_url) as client:
                await create_patient(Api(client, app, settings), staff.token, lastName="Okafor")

            page = await browser.new_page()
            await page.goto(allowed_origin + "/")
            ok = await page.evaluate(
                "([a, t, q]) => runOnboarding(a, t, q)", [api_url, staff.token, ONBOARDING]
            )
            assert ok["ok"], ok
            assert ok["status"] == 200
            assert ok["body"]["data"]["onboarding"]["totalCount"] == 1
            assert ok["body"]["data"]["onboarding"]["edges"][0]["node"]["lastName"] == "Okafor"

            await page.goto(other_origin + "/")
            refused = await page.evaluate(
                "([a, t, q]) => runOnboarding(a, t, q)", [api_url, staff.token, ONBOARDING]
            )
            # The browser blocks the call: fetch rejects with a network error and the
            # page never sees the answer.
            assert refused == {"ok": False, "error": "TypeError: Failed to fetch"}
            await page.close()
        await app.state.services.background.drain()
        app.state.services.hasher.close()
