"""The development activation page (graph/static/activate.html) in a real browser:
Debian's Chromium driven by Playwright against the real app served by uvicorn
(issue 12 item 6). First set-up, reset with date of birth, weak password, rate limit and
reload."""

from __future__ import annotations

import asyncio
import shutil
from collections.abc import AsyncIterator
from dataclasses import dataclass
from typing import Any

import httpx
import pytest
import uvicorn

from graph.app import create_app
from tests.conftest import Api, Mailbox, Staff, free_port, make_settings, token_from
from tests.helpers import invite
from tests.security.support import active_patient, invited

CHROMIUM = shutil.which("chromium") or "/usr/bin/chromium"
pytestmark = pytest.mark.skipif(
    shutil.which("chromium") is None,
    reason="Debian's chromium is not installed (.ci/run installs it)",
)
LAUNCH_ARGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
]


@dataclass
class Served:
    api: Api
    base: str


@pytest.fixture
async def served(
    database: str, smtp_server: tuple[Mailbox, int], settings_overrides: dict[str, Any]
) -> AsyncIterator[Served]:
    port = free_port()
    base = f"http://127.0.0.1:{port}"
    settings = make_settings(
        database,
        smtp_server[1],
        link_base_url=f"{base}/portal/activate",
        password_min_length=14,
        **settings_overrides,
    )
    app = create_app(settings, manage_database=False)
    server = uvicorn.Server(uvicorn.Config(app, host="127.0.0.1", port=port, log_level="warning"))
    task = asyncio.create_task(server.serve())
    for _ in range(200):  # uvicorn offers no event to await for "started"
        if server.started:
            break
        await asyncio.sleep(0.05)
    assert server.started
    async with httpx.AsyncClient(base_url=base, timeout=30) as client:
        yield Served(Api(client, app, settings), base)
    server.should_exit = True
    await task
    app.state.services.hasher.close()


@pytest.fixture
async def page() -> AsyncIterator[Any]:
    from playwright.async_api import async_playwright

    async with async_playwright() as p:
        browser = await p.chromium.launch(executable_path=CHROMIUM, args=LAUNCH_ARGS)
        context = await browser.new_context()
        yield await context.new_page()
        await browser.close()


def link_of(mailbox: Mailbox, address: str) -> str:
    message = mailbox.to(address)[-1]
    return f"/portal/activate#token={token_from(message)}"


async def state_text(page: Any, contains: str) -> str:
    locator = page.locator("#state")
    await locator.filter(has_text=contains).wait_for(timeout=15_000)
    return str(await locator.text_content())


async def test_first_set_up(served: Served, staff: Staff, mailbox: Mailbox, page: Any) -> None:
    await invited(served.api, staff.token, mailbox)
    await page.goto(served.base + link_of(mailbox, "avery.quinn1@example.com"))
    await state_text(page, "Choose a username and password.")
    # only what the link needs is shown (the CSS once overrode `hidden`)
    assert await page.locator("#username-row").is_visible()
    assert not await page.locator("#dob-row").is_visible()
    # the configured minimum, not a hard-coded 12
    assert await page.locator("#min-length").text_content() == "14"
    # the token left the address bar
    assert "token" not in page.url
    await page.fill("#username", "avery.q")
    await page.fill("#password", "lantern-orchard-velvet")
    await page.click("#save")
    assert "Done. Sign in as avery.q." in await state_text(page, "Done")


async def test_reset_with_date_of_birth_keeps_the_username(
    served: Served, staff: Staff, mailbox: Mailbox, page: Any
) -> None:
    # given an active patient who is sent a reset link (resetting an active account asks
    # for the date of birth)
    pid = await active_patient(served.api, staff.token, mailbox, username="avery.first")
    assert (await invite(served.api, staff.token, pid))["userErrors"] == []
    await served.api.deliver()
    await page.goto(served.base + link_of(mailbox, "avery.quinn1@example.com"))
    await state_text(page, "Choose a new password for avery.first.")
    assert not await page.locator("#username-row").is_visible()
    assert await page.locator("#dob-row").is_visible()
    # a wrong date of birth is explained in words, not a code
    await page.fill("#dob", "1990-01-01")
    await page.fill("#password", "lantern-orchard-velvet")
    await page.click("#save")
    text = await state_text(page, "date of birth")
    assert "does not match" in text and "DATE_OF_BIRTH_MISMATCH" not in text
    # the right one resets the password and keeps the username
    await page.fill("#dob", "1980-04-12")
    await page.click("#save")
    assert "Sign in as avery.first." in await state_text(page, "Done")


async def test_weak_password_is_explained_and_the_form_stays(
    served: Served, staff: Staff, mailbox: Mailbox, page: Any
) -> None:
    await invited(served.api, staff.token, mailbox)
    await page.goto(served.base + link_of(mailbox, "avery.quinn1@example.com"))
    await state_text(page, "Choose a username")
    await page.fill("#username", "avery.q")
    await page.fill("#password", "passwordpassword")
    await page.click("#save")
    text = await page.locator("#state.error").text_content(timeout=15_000)
    assert text and "PASSWORD_TOO_WEAK" not in text
    assert await page.locator("#form").is_visible()


@pytest.mark.parametrize("settings_overrides", [{"rate_limit_token": "2/minute"}])
async def test_rate_limited_patient_is_told_to_wait_not_to_ask_for_a_new_link(
    served: Served, staff: Staff, mailbox: Mailbox, page: Any
) -> None:
    await invited(served.api, staff.token, mailbox)
    await page.goto(served.base + link_of(mailbox, "avery.quinn1@example.com"))  # hit 1
    await state_text(page, "Choose a username")
    await page.fill("#username", "avery.q")
    await page.fill("#password", "passwordpassword")
    await page.click("#save")  # hit 2: weak password
    await page.locator("#state.error").wait_for(timeout=15_000)
    await page.click("#save")  # hit 3: over budget
    text = await state_text(page, "Too many attempts")
    assert "link still works" in text
    assert "new one" not in text


async def test_reload_keeps_a_valid_link_valid(
    served: Served, staff: Staff, mailbox: Mailbox, page: Any
) -> None:
    await invited(served.api, staff.token, mailbox)
    await page.goto(served.base + link_of(mailbox, "avery.quinn1@example.com"))
    await state_text(page, "Choose a username")
    await page.reload()
    # after a reload (the fragment is gone from the address bar) the link still works
    await state_text(page, "Choose a username and password.")
    assert await page.locator("#form").is_visible()
