"""One owner for a patient's portal state.

Every change to a patient's portal switch, account, password, sessions or links goes
through :func:`patient_change`::

    async with patient_change(actor, [patient_id]) as change:
        patient = change.patient(patient_id)      # read inside the lock
        if not change.portal_usable(patient): ...  # so the rule holds at the write
        await change.set_password(...)

It opens a transaction, locks the patients' rows in id order (one lock order for every
workflow, so two of them can never deadlock), and reads chart and account state *after*
the lock. The rules about a patient are checked on what it read, never on a copy read
before: slow work (argon2, SMTP) happens outside, and its result is applied only when
what it was based on still holds (the caller compares, e.g. the password hash it
verified against the one read here).

The change owns each step that would otherwise be spelled in several places: issuing
and revoking links (one implementation, always with a reason), storing a new password
(with its consequences: links and sessions revoked, the patient told), sessions,
failure counting and lock-out, queueing mail and writing audit events. After commit it
wakes the mail dispatcher (:func:`mail.outbox.announce`); resolvers never do.

Events for the EMR (SPEC 8.7) belong in :meth:`PatientChange.record`: every state change
passes there, in the transaction that makes it.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Sequence
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any

from tortoise import connections
from tortoise.expressions import F
from tortoise.transactions import in_transaction

from core.clock import utcnow
from core.link_keys import LinkKeys, NewLink
from core.secrets import digest, new_token
from core.settings import Settings
from mail import compose, outbox
from models import (
    INVITABLE_CHART_STATUSES,
    DeliveryStatus,
    LinkPurpose,
    LinkToken,
    PasswordOrigin,
    Patient,
    PatientSession,
    PortalAccount,
    Practice,
    RevokeReason,
    search_index,
)
from models.bulk import (
    id_list,
    id_list_value,
    insert_rows,
    not_in_id_list,
    set_column,
    unnest_select,
)
from onboarding import audit, events, reach
from onboarding.actor import Actor
from onboarding.errors import ErrorCode
from onboarding.sql import Params, columns_of, insert_one

SESSION_PREFIX = "ses_"


@dataclass(frozen=True)
class IssuedLink:
    """A new link as its message carries it: the nonce the dispatcher re-derives the
    token from at send time, and the digest that tells it which key made it. The raw
    token is not kept, not even here (core.link_keys)."""

    patient_id: int
    link_id: int
    nonce: str
    digest: str
    expires_at: datetime
    sent_to: str

    @property
    def channel(self) -> str:
        return reach.channel_of(self.sent_to)


LINK_COLUMNS = (
    ("practice_id", "int"),
    ("patient_id", "int"),
    ("digest", "text"),
    ("purpose", "text"),
    ("sent_to", "text"),
    ("created_by_id", "int"),
    ("created_at", "timestamptz"),
    ("expires_at", "timestamptz"),
    ("delivery_status", "text"),
    ("dob_failures", "int"),
    ("is_reminder", "bool"),
    ("channel", "text"),
)


def portal_usable(patient: Patient) -> bool:
    """The one spelling of "this chart may use the portal": access enabled and a chart
    that is neither inactive nor deceased."""
    return bool(patient.portal_enabled) and patient.chart_status in INVITABLE_CHART_STATUSES


def temporary_expired(account: PortalAccount, settings: Settings, now: datetime) -> bool:
    """A staff-set password never used stops working its lifetime after staff set it
    (SPEC 7.6). "Used" means a login with this password: a login from before staff set
    it does not count, so a returning patient gets no longer-lived one."""
    set_at = account.password_set_at
    return (
        account.password_origin == PasswordOrigin.STAFF
        and set_at is not None
        and set_at <= now - timedelta(days=settings.temporary_password_ttl_days)
        and (account.last_login_at is None or account.last_login_at < set_at)
    )


def _active(account: PortalAccount) -> bool:
    """The account counts as ACTIVE (the status rule's ``account_active``, migration
    0008): the owner chose the password, or logged in with the staff-set one."""
    if account.password_origin == PasswordOrigin.PATIENT:
        return True
    return (
        account.password_origin == PasswordOrigin.STAFF
        and account.last_login_at is not None
        and account.password_set_at is not None
        and account.last_login_at >= account.password_set_at
    )


def locked(account: PortalAccount, now: datetime) -> bool:
    return account.locked_until is not None and account.locked_until > now


def link_problem(
    link: LinkToken | None, patient: Patient | None, now: datetime
) -> ErrorCode | None:
    """Why a link cannot be used, or None. Unknown, revoked and disabled-patient links all
    answer TOKEN_INVALID: a holder learns nothing about the patient."""
    if link is None or link.revoked_at is not None:
        return ErrorCode.TOKEN_INVALID
    if link.used_at is not None:
        return ErrorCode.TOKEN_USED
    if link.expires_at <= now:
        return ErrorCode.TOKEN_EXPIRED
    if patient is None or not portal_usable(patient):
        return ErrorCode.TOKEN_INVALID
    return None


async def _read_locked(
    ids: Sequence[int], practice_id: int | None
) -> tuple[dict[int, Patient], dict[int, PortalAccount]]:
    """The patients (of ``practice_id`` when given), locked in id order by the statement
    that reads them (PostgreSQL), then their accounts in a second statement, whose new
    snapshot (READ COMMITTED) sees whatever the writer a lock waited for committed.
    SQLite has no row locks: its writers are serialised by the database lock (and, in
    process, by Tortoise's connection lock), so the transaction alone gives the same
    guarantee. Hand-written statements and Tortoise's own row-to-model step: building
    the two ORM queries and the lock cost a login more event-loop time than the
    statements themselves (issue 15, "logins stay out of the readers' way")."""
    conn = connections.get("default")
    dialect = conn.capabilities.dialect
    params = Params(dialect)
    sql = (
        f"SELECT {columns_of(Patient)} FROM patient"  # noqa: S608 (model columns, placeholders)
        f" WHERE {id_list(dialect, 'id', params(id_list_value(dialect, ids)))}"
    )
    if practice_id is not None:
        sql += f" AND practice_id = {params(practice_id)}"
    if dialect == "postgres":
        sql += " ORDER BY id FOR UPDATE"
    rows = await conn.execute_query_dict(sql, params.values)
    patients = {row["id"]: Patient._init_from_db(**row) for row in rows}
    if not patients:
        return patients, {}
    params = Params(dialect)
    rows = await conn.execute_query_dict(
        f"SELECT {columns_of(PortalAccount)} FROM portal_account"  # noqa: S608 (as above)
        f" WHERE {id_list(dialect, 'patient_id', params(id_list_value(dialect, list(patients))))}",
        params.values,
    )
    return patients, {row["patient_id"]: PortalAccount._init_from_db(**row) for row in rows}


async def _set_account(account: PortalAccount, columns: dict[str, Any]) -> None:
    """``UPDATE portal_account SET ...`` of these columns (names from this module only),
    and the same on the instance. Hand-written for the login path, where building the
    ORM's update query cost more event-loop time than running it (issue 15)."""
    # Names are interpolated: only the model's own columns (callers pass constants).
    assert set(columns) <= PortalAccount._meta.db_fields, columns
    conn = connections.get("default")
    params = Params(conn.capabilities.dialect)
    sets = ", ".join(f"{name} = {params(value)}" for name, value in columns.items())
    await conn.execute_query(
        f"UPDATE portal_account SET {sets} WHERE id = {params(account.id)}",  # noqa: S608
        params.values,
    )
    for key, value in columns.items():
        setattr(account, key, value)


async def _insert_links_and_point(conn: Any, rows: list[tuple[Any, ...]]) -> dict[int, int]:
    """PostgreSQL: the new links and the patients pointed at them in one statement (one
    round trip, one plan), from one array per column. The patient update's trigger
    (migration 0006) reads the new link row to copy its state: rows a statement's CTE
    inserted are visible to the trigger's own query, and its foreign key is checked at
    the end of the statement, when they exist."""
    names = ", ".join(f'"{name}"' for name, _ in LINK_COLUMNS)
    select, values = unnest_select(LINK_COLUMNS, rows)
    sql = (
        f'WITH new AS (INSERT INTO "link_token" ({names}) {select}'  # noqa: S608
        " RETURNING id, patient_id),"
        " pointed AS (UPDATE patient AS p SET last_link_id = new.id FROM new"
        " WHERE p.id = new.patient_id)"
        " SELECT patient_id, id FROM new"
    )
    _, records = await conn.execute_query(sql, values)
    return {record[0]: record[1] for record in records}


async def _insert_links_sqlite(rows: list[tuple[Any, ...]]) -> dict[int, int]:
    """SQLite (one writer, in process): ``executemany``, then the new ids read back by
    their unique digests, then the patients pointed at them."""
    await insert_rows(LinkToken._meta.db_table, LINK_COLUMNS, rows)
    by_digest: dict[str, int] = {}
    wanted = [row[2] for row in rows]
    for start in range(0, len(wanted), 1000):
        chunk = wanted[start : start + 1000]
        for link_id, link_digest in await LinkToken.filter(digest__in=chunk).values_list(
            "id", "digest"
        ):
            by_digest[link_digest] = link_id
    new_ids = {row[1]: by_digest[row[2]] for row in rows}
    await set_column("patient", "last_link_id", "int", new_ids)
    return new_ids


@dataclass
class PatientChange:
    actor: Actor
    practice_id: int | None
    ids: list[int]
    patients: dict[int, Patient] = field(default_factory=dict)
    accounts: dict[int, PortalAccount] = field(default_factory=dict)
    mail_queued: bool = False
    # Events written by this change, announced after commit: (practice id, event ids).
    events_written: list[tuple[int, list[int]]] = field(default_factory=list)
    # Patients whose account this change made active (the redeeming or changed
    # password is then ``account.activated`` rather than ``account.password_changed``).
    _activated: set[int] = field(default_factory=set)
    _practice: Practice | None = None
    # A large write's entries in the patient search index wait until after commit
    # (models/search_index.py).
    merge_search_index: bool = False

    # -- reads (inside the lock) ----------------------------------------------------

    def patient(self, patient_id: int) -> Patient | None:
        return self.patients.get(patient_id)

    def account(self, patient_id: int) -> PortalAccount | None:
        return self.accounts.get(patient_id)

    async def practice(self) -> Practice:
        if self._practice is None:
            practice_id = self.practice_id
            if practice_id is None:
                practice_id = next(iter(self.patients.values())).practice_id
            self._practice = await Practice.get(id=practice_id)
        return self._practice

    async def link(self, link_id: int) -> tuple[LinkToken | None, ErrorCode | None]:
        """The link as it is now, and why it cannot be used (None: usable)."""
        link = await LinkToken.filter(id=link_id).first()
        patient = self.patient(link.patient_id) if link is not None else None
        return link, link_problem(link, patient, utcnow())

    async def _writing_patients(self, count: int) -> None:
        """Before an update of ``count`` patient rows."""
        if not self.merge_search_index:
            conn = connections.get("default")
            self.merge_search_index = await search_index.defer_merge(conn, count)

    # -- the portal switch ---------------------------------------------------------

    async def enable_portal(self, patient_ids: Sequence[int]) -> list[int]:
        """Enable access for those of these patients whose chart may have it; returns the
        ids that changed."""
        ids = [
            pid
            for pid in patient_ids
            if (p := self.patient(pid)) is not None
            and not p.portal_enabled
            and p.chart_status in INVITABLE_CHART_STATUSES
        ]
        if ids:
            await self._writing_patients(len(ids))
            await Patient.filter(id__in=ids).update(portal_enabled=True)
            for pid in ids:
                self.patients[pid].portal_enabled = True
        return ids

    async def disable_portal(self, patient_ids: Sequence[int], reason: RevokeReason) -> None:
        """Access ends with everything that grants it: links and sessions (TOK-5)."""
        if not patient_ids:
            return
        await self._writing_patients(len(patient_ids))
        await Patient.filter(id__in=list(patient_ids)).update(portal_enabled=False)
        for pid in patient_ids:
            if pid in self.patients:
                self.patients[pid].portal_enabled = False
        await self.revoke_links(patient_ids, reason)
        await self.revoke_sessions(patient_ids)

    # -- links ---------------------------------------------------------------------

    async def revoke_links(
        self, patient_ids: Sequence[int], reason: RevokeReason, *, keep: Sequence[int] = ()
    ) -> None:
        """Revoke every outstanding link of these patients but those in ``keep`` (one
        statement, one parameter for the ids: a bulk invitation revokes for 10,000)."""
        if not patient_ids:
            return
        conn = connections.get("default")
        params = Params(conn.capabilities.dialect)
        dialect = params.dialect
        now, why = params(utcnow()), params(reason.value)
        ids = id_list(dialect, "patient_id", params(id_list_value(dialect, patient_ids)))
        sql = (
            f"UPDATE link_token SET revoked_at = {now}, revoke_reason = {why}"  # noqa: S608
            f" WHERE {ids} AND used_at IS NULL AND revoked_at IS NULL"
        )
        if keep:
            sql += f" AND {not_in_id_list(dialect, 'id', params(id_list_value(dialect, keep)))}"
        await conn.execute_query(sql, params.values)

    async def revoke_link(self, link_id: int, reason: RevokeReason) -> bool:
        """Revoke one link if it is still outstanding (a bounce, too many wrong dates)."""
        changed = await LinkToken.filter(id=link_id, used_at=None, revoked_at=None).update(
            revoked_at=utcnow(), revoke_reason=reason
        )
        return changed > 0

    async def issue_links(
        self,
        patients: Sequence[tuple[int, str]],
        *,
        purpose: LinkPurpose,
        ttl: timedelta,
        created_by: int | None,
        keys: LinkKeys,
        is_reminder: bool = False,
        issued: dict[int, NewLink] | None = None,
    ) -> list[IssuedLink]:
        """One new link per (patient id, address), in bulk statements; older outstanding
        links of these patients are revoked, so each has at most one usable link. Each
        token is derived from the server secret (``keys``) and a fresh nonce; the link
        row stores only the token's digest. ``issued`` holds links made before the
        transaction (a bulk invitation derives 10,000 nonces and digests outside it, so
        the locks are not held while they are computed); missing ones are made here."""
        if not patients:
            return []
        now = utcnow()
        expires_at = now + ttl
        patient_ids = [pid for pid, _ in patients]
        made = issued or {}
        links = {pid: made.get(pid) or keys.issue() for pid in patient_ids}
        rows = [
            (
                self.patients[pid].practice_id,
                pid,
                links[pid].digest,
                purpose.value,
                address,
                created_by,
                now,
                expires_at,
                DeliveryStatus.QUEUED.value,
                0,
                is_reminder,
                reach.channel_of(address),
            )
            for pid, address in patients
        ]
        conn = connections.get("default")
        await self._writing_patients(len(rows))
        if conn.capabilities.dialect == "postgres":
            new_ids = await _insert_links_and_point(conn, rows)
        else:
            new_ids = await _insert_links_sqlite(rows)
        # Revoked after the patients point at their new links: the trigger that copies a
        # link's state onto its patient (migration 0006) then has nothing to copy for these
        # older links, instead of rewriting 10,000 patient rows a second time.
        await self.revoke_links(patient_ids, RevokeReason.SUPERSEDED, keep=list(new_ids.values()))
        return [
            IssuedLink(pid, new_ids[pid], links[pid].nonce, links[pid].digest, expires_at, address)
            for pid, address in patients
        ]

    async def consume_link(self, link_id: int) -> bool:
        """Mark the link used; True for exactly one caller."""
        now = utcnow()
        changed = await LinkToken.filter(
            id=link_id, used_at=None, revoked_at=None, expires_at__gt=now
        ).update(used_at=now)
        # > 0, not == 1: on SQLite Tortoise counts the rows the patient trigger changes too.
        return changed > 0

    async def count_dob_failure(self, link_id: int, max_failures: int) -> int:
        """Count a wrong date of birth; the ``max_failures``-th revokes the link. The
        caller holds the lock and saw the link usable, so the count read back is exact."""
        await LinkToken.filter(id=link_id).update(dob_failures=F("dob_failures") + 1)
        link = await LinkToken.get(id=link_id).only("id", "dob_failures")
        if link.dob_failures >= max_failures:
            await self.revoke_link(link_id, RevokeReason.TOO_MANY_ATTEMPTS)
        return link.dob_failures

    # -- passwords and sessions ----------------------------------------------------

    async def set_password(
        self,
        patient: Patient,
        account: PortalAccount | None,
        *,
        username: str | None,
        password_hash: str | None,
        origin: PasswordOrigin,
        revoke_reason: RevokeReason = RevokeReason.PASSWORD_SET,
    ) -> PortalAccount:
        """Create or update the account. A new password clears a lock-out, revokes the
        patient's outstanding links (they belong to the old password, TOK-5) and every
        session, and tells the patient (never the password, NOTIF-1). A duplicate
        username surfaces as IntegrityError from the unique index (race-safe)."""
        now = utcnow()
        was_active = account is not None and _active(account)
        was_locked = account is not None and locked(account, now)
        had_password = account is not None and account.password_hash is not None
        renamed = account is not None and username is not None and username != account.username
        columns: dict[str, Any] = {}
        if username is not None:
            columns["username"] = username
            columns["username_key"] = username.casefold()
        if password_hash is not None:
            columns.update(
                password_hash=password_hash,
                password_origin=origin,
                password_set_at=now,
                must_change_password=origin is PasswordOrigin.STAFF,
                failed_logins=0,
                locked_until=None,
            )
        if account is None:
            assert username is not None
            account = await PortalAccount.create(patient_id=patient.id, **columns)
        elif columns:
            # Only the columns this change decides: a stale copy of the rest is never
            # written back over a concurrent change.
            await PortalAccount.filter(id=account.id).update(**columns)
            for key, value in columns.items():
                setattr(account, key, value)
        self.accounts[patient.id] = account
        if password_hash is not None:
            if origin is PasswordOrigin.PATIENT and not was_active:
                self._activated.add(patient.id)
            if was_locked:
                # A new password clears the lock-out: the EMR hears it (no audit twin).
                await self.emit(events.ACCOUNT_UNLOCKED, [patient.id])
            await self.revoke_links([patient.id], revoke_reason)
            await self.revoke_sessions([patient.id])
            await self.notify(patient, reach.password_notice_kind(origin, had_password))
        elif renamed:
            await self.notify(patient, "username_changed", username=username)
        return account

    async def notify(self, patient: Patient, kind: str, *, username: str | None = None) -> None:
        """Tell the patient of a change to their account (never the password, NOTIF-1),
        by email or, without one, by text when they consented (SPEC 9.3)."""
        route = reach.notice_route(patient)
        if route is None:
            return
        channel, address = route
        draft = compose.password_notice(
            await self.practice(), patient, kind=kind, when=utcnow(), username=username
        )
        await self.queue(
            [
                outbox.message(
                    practice_id=patient.practice_id,
                    patient_id=patient.id,
                    to_addr=address,
                    draft=draft,
                    channel=channel,
                )
            ]
        )

    async def start_session(
        self, account: PortalAccount, settings: Settings, *, new_hash: str | None = None
    ) -> str:
        """A successful login: failures forgotten, the login time kept, the hash upgraded
        when its parameters are old (rehash on login), and a session opened."""
        now = utcnow()
        if not _active(account):
            # The first login with a staff-set password makes the account ACTIVE.
            self._activated.add(account.patient_id)
        columns: dict[str, Any] = {"failed_logins": 0, "locked_until": None, "last_login_at": now}
        if new_hash:
            columns["password_hash"] = new_hash
        await _set_account(account, columns)
        return await self.create_session(account, settings)

    async def create_session(self, account: PortalAccount, settings: Settings) -> str:
        """Sessions are opened only here, after the caller re-checked the account under
        the lock. A must-change account's session may only change the password."""
        token = SESSION_PREFIX + new_token()
        now = utcnow()
        await insert_one(
            connections.get("default"),
            "patient_session",
            ("account_id", "token_digest", "full_access", "created_at", "expires_at"),
            (
                account.id,
                digest(token),
                not account.must_change_password,
                now,
                now + timedelta(minutes=settings.session_ttl_minutes),
            ),
        )
        return token

    async def revoke_sessions(self, patient_ids: Sequence[int]) -> None:
        if patient_ids:
            await PatientSession.filter(
                account__patient_id__in=list(patient_ids), revoked_at=None
            ).update(revoked_at=utcnow())

    async def session_live(self, session_id: int) -> bool:
        return await PatientSession.filter(
            id=session_id, revoked_at=None, expires_at__gt=utcnow()
        ).exists()

    async def count_login_failure(
        self, account: PortalAccount, settings: Settings, *, reason: str, count: bool = True
    ) -> None:
        """Count a wrong password (login or changePassword). The lock makes the count
        exact: the ``lockout_threshold``-th failure locks the account, whatever runs at
        the same time, and a locked account's guesses are not counted (they are refused
        like a wrong password, and cannot extend or clear the lock)."""
        now = utcnow()
        patient_id = account.patient_id
        practice_id = self.patients[patient_id].practice_id
        if locked(account, now):
            reason = "locked"
        elif count:
            failures = account.failed_logins + 1
            columns: dict[str, Any] = {"failed_logins": failures}
            if failures >= settings.lockout_threshold:
                columns = {
                    "failed_logins": 0,
                    "locked_until": now + timedelta(minutes=settings.lockout_minutes),
                }
            await _set_account(account, columns)
        await self.record(
            self.actor,
            "password.change_failed" if reason == "change_password" else "login.failed",
            patient_id=patient_id,
            practice_id=practice_id,
            outcome="failure",
            detail={"reason": reason},
        )
        if count and reason != "locked" and locked(account, now):
            await self.record(
                self.actor,
                "login.locked_out",
                patient_id=patient_id,
                practice_id=practice_id,
                outcome="failure",
            )

    # -- mail and audit ------------------------------------------------------------

    async def queue(self, messages: Sequence[outbox.Queued]) -> None:
        if messages:
            await outbox.enqueue(messages)
            self.mail_queued = True

    async def record(self, actor: Actor, action: str, **kwargs: Any) -> None:
        """Audit one change and, when it is a portal-state change, write its event for
        the EMR (SPEC 8.7) in the same transaction."""
        await audit.record(actor, action, **kwargs)
        patient_id = kwargs.get("patient_id")
        if patient_id is None:
            return
        if action == "login.succeeded":
            # A login changes the portal state only when it activates the account.
            event_type: str | None = (
                events.ACCOUNT_ACTIVATED if patient_id in self._activated else None
            )
        else:
            event_type = events.EVENT_OF_AUDIT_ACTION.get(action)
            if event_type == events.ACCOUNT_PASSWORD_CHANGED and patient_id in self._activated:
                event_type = events.ACCOUNT_ACTIVATED
        if event_type is not None:
            self._activated.discard(patient_id)
            await self.emit(event_type, [patient_id], practice_id=kwargs.get("practice_id"))

    async def record_many(self, actor: Actor, action: str, patient_ids: Sequence[int]) -> None:
        await audit.record_many(actor, action, patient_ids)
        event_type = events.EVENT_OF_AUDIT_ACTION.get(action)
        if event_type is not None:
            await self.emit(event_type, patient_ids, practice_id=actor.practice_id)

    async def emit(
        self, event_type: str, patient_ids: Sequence[int], *, practice_id: int | None = None
    ) -> None:
        """Write events, for :meth:`record` and where an event has no audit twin
        (delivered, unlocked). Each goes to the patient's own practice as read under the
        lock; the ids are announced after commit."""
        by_practice: dict[int, list[int]] = {}
        for pid in patient_ids:
            patient = self.patients.get(pid)
            owner = patient.practice_id if patient is not None else practice_id
            if owner is None:
                owner = self.practice_id
            if owner is not None:
                by_practice.setdefault(owner, []).append(pid)
        for owner, ids in by_practice.items():
            written = await events.emit(event_type, ids, owner)
            if written:
                self.events_written.append((owner, written))


BULK_FIELDS = (
    "id",
    "practice_id",
    "first_name",
    "email",
    "email_key",
    "chart_status",
    "portal_enabled",
    "preferred_language",
    "mobile_phone",
    "sms_consent",
)


@dataclass(slots=True)
class PatientRow:
    """The columns of a patient the bulk actions read (``BULK_FIELDS``), plus whether
    the patient has a password: a plain object, not a Tortoise instance, so reading
    10,000 of them under the lock costs a tuple each rather than a model's
    initialisation. It answers the attribute names of :class:`Patient` it carries."""

    id: int
    practice_id: int
    first_name: str
    email: str | None
    email_key: str | None
    chart_status: str
    portal_enabled: bool
    preferred_language: str
    mobile_phone: str | None
    sms_consent: bool
    has_password: bool


async def read_bulk_rows(
    ids: Sequence[int], practice_id: int | None, *, lock: bool
) -> dict[int, Patient]:
    """The bulk read: with ``lock``, on PostgreSQL, the row locks (in id order) and the
    patients' columns in one statement, then whether each has a password in a second.
    Not joined into the first: a ``FOR UPDATE`` that waited for another writer re-reads
    the locked patient row but evaluates everything else (a joined account, a subquery)
    in the snapshot taken before the wait, so a password set by the writer it waited
    for would be missed and the patient sent the set-up instead of the reset message.
    The second statement takes a new snapshot (READ COMMITTED) after the locks are held.
    Without ``lock``, a dry run's report (read again under the lock to act)."""
    conn = connections.get("default")
    params = Params(conn.capabilities.dialect)
    dialect = params.dialect
    columns = ", ".join(f"p.{name}" for name in BULK_FIELDS)
    sql = (
        f"SELECT {columns} FROM patient p"  # noqa: S608
        f" WHERE {id_list(dialect, 'p.id', params(id_list_value(dialect, list(ids))))}"
    )
    if practice_id is not None:
        sql += f" AND p.practice_id = {params(practice_id)}"
    if lock and dialect == "postgres":
        sql += " ORDER BY p.id FOR UPDATE OF p"
    _, rows = await conn.execute_query(sql, params.values)
    if not rows:
        return {}
    found = [row[0] for row in rows]
    params = Params(dialect)
    _, with_password = await conn.execute_query(
        "SELECT patient_id FROM portal_account WHERE password_hash IS NOT NULL"  # noqa: S608
        f" AND {id_list(dialect, 'patient_id', params(id_list_value(dialect, found)))}",
        params.values,
    )
    has_password = {row[0] for row in with_password}
    read = (PatientRow(*row, row[0] in has_password) for row in rows)  # type: ignore[call-arg]
    return {row.id: row for row in read}  # type: ignore[misc]


@asynccontextmanager
async def patient_change(
    actor: Actor,
    patient_ids: Sequence[int],
    *,
    practice_id: int | None = None,
    bulk: bool = False,
) -> AsyncIterator[PatientChange]:
    """Lock these patients (of ``practice_id`` when given: other practices' ids are
    neither locked nor read), read them and their accounts inside the lock, and yield the
    change. ``bulk`` reads only the columns the bulk actions need, as
    :class:`PatientRow`, and no accounts (a 10,000-patient invitation). Mail queued by
    the change leaves after commit."""
    ids = sorted(set(patient_ids))
    change = PatientChange(actor, practice_id, ids)
    try:
        async with in_transaction():
            if ids and bulk:
                change.patients = await read_bulk_rows(ids, practice_id, lock=True)
            elif ids:
                change.patients, change.accounts = await _read_locked(ids, practice_id)
            yield change
    finally:
        # Index entries outlive a rollback (they point at dead rows until vacuum): a
        # deferred merge is due either way.
        if change.merge_search_index:
            search_index.merge_soon()
    if change.mail_queued:
        outbox.announce()
    for owner, written in change.events_written:
        events.announce(owner, written)
