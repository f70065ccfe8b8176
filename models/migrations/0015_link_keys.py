"""Link tokens are derived from ``PORTAL_SECRET_KEY`` (``core.link_keys``): an outbox row
now holds the link's nonce and digest, never the link itself.

Messages queued before this change still hold a raw, usable link in ``params``. They
cannot be converted (a random token is no HMAC of anything, and a migration has no key),
and sending them as they are would keep usable links in the database, and in PostgreSQL's
dead row versions, for up to a day. So they fail closed: each such pending message is
marked failed with its variables scrubbed, and the link it carried is revoked as
undeliverable with a detail staff see on the patient's last invitation ("send again").
This includes rows in the pre-0013 shape (``practice_name``, English time strings) that
``mail.compose.upgrade_params`` would otherwise still render: a raw link is a raw link. The
dispatcher refuses such a row too (it drops a stored ``link``), in case an old process
queues one after this ran. Drain the outbox before upgrading (``portal mail-worker`` with
the old version until nothing is pending) and nothing is lost; docs/deploy.md says so.

No schema change: ``link_token.digest`` stays the SHA-256 of the token, so links already
delivered keep working until they expire.
"""

from typing import Any

from tortoise import migrations
from tortoise.migrations import operations as ops

from core.clock import utcnow

DETAIL = "queued before link keys (migration 0015): send the invitation again"

HOLDS_LINK = {
    "postgres": "status = 'pending' AND params ? 'link' AND NOT params ? 'link_nonce'",
    "sqlite": (
        "status = 'pending' AND json_extract(params, '$.link') IS NOT NULL"
        " AND json_extract(params, '$.link_nonce') IS NULL"
    ),
}


async def fail_messages_holding_links(apps: Any, state_editor: Any) -> None:
    client = state_editor.client
    postgres = client.capabilities.dialect == "postgres"
    holds = HOLDS_LINK["postgres" if postgres else "sqlite"]
    now: Any = utcnow()
    mark = "$1" if postgres else "?"
    if not postgres:
        now = now.isoformat(sep=" ")  # how Tortoise writes datetimes on SQLite
    # The links first, while the rows still say which they are.
    await client.execute_query(
        f"UPDATE link_token SET revoked_at = {mark}, revoke_reason = 'undeliverable',"  # noqa: S608
        f" delivery_status = 'FAILED', delivery_detail = '{DETAIL}'"
        f" WHERE used_at IS NULL AND revoked_at IS NULL"
        f" AND id IN (SELECT link_id FROM outbox_message WHERE {holds})",
        [now],
    )
    await client.execute_query(
        f"UPDATE outbox_message SET status = 'failed', params = '{{}}',"  # noqa: S608
        f" last_error = '{DETAIL}' WHERE {holds}"
    )


class Migration(migrations.Migration):
    dependencies = [("models", "0013_reach")]

    initial = False

    operations = [ops.RunPython(fail_messages_holding_links)]
