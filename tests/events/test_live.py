"""The live Onboarding Tool (SPEC 8.9): `onboardingChanged` over graphql-transport-ws,
against real uvicorn server processes and a real WebSocket client."""

from __future__ import annotations

import asyncio
import json
import os
import socket
import time
from pathlib import Path
from urllib.parse import urlsplit

import pytest
import websockets

from tests.conftest import BACKEND, Staff
from tests.events.servers import gql, live_client, server_process
from tests.helpers import CREATE_PATIENT, ENABLE, chart

SUBSCRIBE = """
subscription($ids: [ID!], $statuses: [PortalStatus!]) {
  onboardingChanged(patientIds: $ids, statuses: $statuses) {
    eventId type patientId sequence portalStatus occurredAt
    patient { id lastName portalStatus }
  }
}"""

DISABLE = """
mutation($ids: [ID!]!) { disablePortal(input: {patientIds: $ids}) { results { userErrors { code } } } }
"""


async def new_patient(base: str, token: str, n: int) -> str:
    result = await gql(base, token, CREATE_PATIENT, {"input": chart(n)})
    return result["data"]["createPatient"]["patient"]["id"]


async def until_seen(client, base: str, token: str, pid: str, marker: str) -> None:  # type: ignore[no-untyped-def]
    """Toggle a warm-up patient until the client hears of it: its subscription is then
    registered, so a later silence means something. Then enable ``marker`` once and read
    up to its event, so that no late warm-up event is left for the test to misread (a
    quiet gap is no proof: a toggle's event may come after it)."""
    deadline = time.monotonic() + 20
    enabled = False
    while time.monotonic() < deadline:
        await gql(base, token, DISABLE if enabled else ENABLE, {"ids": [pid]})
        enabled = not enabled
        change = await client.next(0.5)
        if change is not None:
            break
    else:
        raise AssertionError("the subscription never heard the warm-up patient")
    await gql(base, token, ENABLE, {"ids": [marker]})
    while change is None or change["patientId"] != marker:
        assert change is None or change["patientId"] == pid, change
        assert time.monotonic() < deadline, "the marker patient's event never came"
        change = await client.next(1)


# Pub/sub uses no keys; the servers' rate limits write a few in this database.
REDIS_URL = os.environ.get("PORTAL_TEST_REDIS_URL", "redis://127.0.0.1:6379/13")


def redis_reachable() -> bool:
    parts = urlsplit(REDIS_URL)
    try:
        socket.create_connection((parts.hostname or "127.0.0.1", parts.port or 6379), 1).close()
    except OSError:
        return False
    return True


@pytest.mark.parametrize("fanout", ["database", "redis"])
async def test_a_change_made_through_another_process_is_pushed_within_a_second(
    staff: Staff, other_staff: Staff, tmp_path: Path, fanout: str
) -> None:
    # given two server processes on one database, hearing each other through
    # PostgreSQL NOTIFY or Redis (SQLite without Redis is one process, fanned out in
    # process)
    if fanout == "redis" and not redis_reachable():
        pytest.skip(f"no Redis at {REDIS_URL} (set PORTAL_TEST_REDIS_URL)")
    extra = {"redis_url": REDIS_URL} if fanout == "redis" else {}
    async with server_process(tmp_path, **extra) as reader_base:
        if BACKEND == "postgres" or fanout == "redis":
            async with server_process(tmp_path, **extra) as writer_base:
                await _scenario(reader_base, writer_base, staff, other_staff)
        else:
            await _scenario(reader_base, reader_base, staff, other_staff)


async def _scenario(reader: str, writer: str, staff: Staff, other_staff: Staff) -> None:
    warm = await new_patient(writer, staff.token, 1)
    other_warm = await new_patient(writer, other_staff.token, 2)
    target = await new_patient(writer, staff.token, 3)
    marker = await new_patient(writer, staff.token, 4)
    other_marker = await new_patient(writer, other_staff.token, 5)
    # and live clients of the reader process: this practice, this practice filtered to
    # another patient, and another practice
    async with (
        live_client(reader, staff.token, SUBSCRIBE) as mine,
        live_client(reader, staff.token, SUBSCRIBE, {"ids": [warm]}) as filtered,
        live_client(reader, other_staff.token, SUBSCRIBE) as theirs,
    ):
        await until_seen(mine, writer, staff.token, warm, marker)
        await until_seen(theirs, writer, other_staff.token, other_warm, other_marker)
        while await filtered.next(0.3) is not None:
            pass
        # when staff enable the target patient through the writer process
        started = time.monotonic()
        result = await gql(writer, staff.token, ENABLE, {"ids": [target]})
        assert result["data"]["enablePortal"]["results"][0]["userErrors"] == []
        change = await mine.next(5)
        elapsed = time.monotonic() - started
        # then this practice's client hears it within a second, with the new status
        assert change is not None
        assert elapsed < 1.0, elapsed
        assert (change["type"], change["patientId"], change["portalStatus"]) == (
            "portal.enabled", target, "NOT_INVITED"
        )
        assert change["patient"]["portalStatus"] == "NOT_INVITED"
        assert change["eventId"].startswith("evt_") and change["sequence"] >= 1
        # and neither the other practice's client nor a client filtered to another
        # patient hears anything
        assert await theirs.next(0.5) is None
        assert await filtered.next(0.1) is None


async def test_connection_without_a_staff_token_is_refused(staff: Staff, tmp_path: Path) -> None:
    async with server_process(tmp_path) as base:
        url = base.replace("http://", "ws://") + "/graphql"
        async with websockets.connect(url, subprotocols=["graphql-transport-ws"]) as ws:  # type: ignore[list-item]
            await ws.send(json.dumps({"type": "connection_init", "payload": {}}))
            with pytest.raises(websockets.ConnectionClosed) as closed:
                await asyncio.wait_for(ws.recv(), 10)
        assert closed.value.rcvd is not None and closed.value.rcvd.code == 4403


async def test_a_subscriber_that_falls_behind_is_dropped_with_a_clear_close_code(
    staff: Staff, tmp_path: Path
) -> None:
    # given a server whose subscribers may have two events waiting
    async with server_process(tmp_path, live_buffer="2") as base:
        ids = [await new_patient(base, staff.token, n) for n in range(1, 7)]
        async with live_client(base, staff.token, SUBSCRIBE) as client:
            marker, warm = ids.pop(), ids.pop()
            await until_seen(client, base, staff.token, warm, marker)
            # when one bulk change brings four events at once
            await gql(base, staff.token, ENABLE, {"ids": ids})
            # then the client is closed with 4008 and the reason, not left behind
            with pytest.raises(websockets.ConnectionClosed) as closed:
                for _ in range(10):
                    await asyncio.wait_for(client.ws.recv(), 10)
            assert closed.value.rcvd is not None
            assert closed.value.rcvd.code == 4008
            assert "too slow" in closed.value.rcvd.reason


async def test_a_revoked_staff_token_hears_nothing_more(staff: Staff, tmp_path: Path) -> None:
    # given a live client of a staff user, and another staff user of the same practice
    from onboarding.admin import create_staff, revoke_staff

    async with server_process(tmp_path) as base:
        warm = await new_patient(base, staff.token, 1)
        marker = await new_patient(base, staff.token, 2)
        target = await new_patient(base, staff.token, 3)
        _, colleague = await create_staff(staff.practice_id, "Other desk")
        async with live_client(base, staff.token, SUBSCRIBE) as client:
            await until_seen(client, base, staff.token, warm, marker)
            # when the first user's token is revoked (a second after its last check:
            # the token is asked again at most once a second) and a colleague changes
            # a patient
            await asyncio.sleep(1.1)
            await revoke_staff(staff.staff_id)
            result = await gql(base, colleague, ENABLE, {"ids": [target]})
            assert result["data"]["enablePortal"]["results"][0]["userErrors"] == []
            # then the socket is closed with 4403 before anything about the patient is sent
            with pytest.raises(websockets.ConnectionClosed) as closed:
                await asyncio.wait_for(client.ws.recv(), 10)
            assert closed.value.rcvd is not None and closed.value.rcvd.code == 4403
            assert "no longer valid" in closed.value.rcvd.reason
