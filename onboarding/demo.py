"""Realistic demo data: the CLI's ``demo`` and the benchmarks use it."""

from __future__ import annotations

import random
from datetime import date, timedelta

from tortoise import connections

from core.clock import utcnow
from core.passwords import pwd_context
from core.secrets import new_token
from core.settings import Settings
from models import (
    ActorType,
    ChartStatus,
    DeliveryStatus,
    LinkToken,
    OutboxMessage,
    OutboxStatus,
    PasswordOrigin,
    Patient,
    PortalAccount,
    Practice,
)
from onboarding.actor import SYSTEM, Actor
from onboarding.admin import create_practice, create_staff
from onboarding.bulk import BulkRequest
from onboarding.invitations import send_invitations
from onboarding.unit_of_work import patient_change

FIRST = (
    "James Mary Robert Patricia John Jennifer Michael Linda David Elizabeth William Barbara "
    "Richard Susan Joseph Jessica Thomas Sarah Charles Karen Christopher Lisa Daniel Nancy "
    "Matthew Betty Anthony Sandra Mark Margaret Donald Ashley Steven Kimberly Andrew Emily "
    "Paul Donna Joshua Michelle Kenneth Carol Kevin Amanda Brian Melissa George Deborah "
    "Timothy Stephanie Ronald Rebecca Jason Sharon Edward Laura Jeffrey Cynthia Ryan Dorothy "
    "Jacob Amy Gary Kathleen Nicholas Angela Eric Shirley Jonathan Emma Stephen Brenda Larry "
    "Pamela Justin Nicole Scott Anna Brandon Samantha Benjamin Katherine Samuel Christine "
    "Gregory Debra Alexander Rachel Patrick Carolyn Frank Janet Raymond Maria Jack Olivia "
    "Dennis Heather Jerry Helen Tyler Catherine Aaron Diane Jose Julie Adam Victoria Nathan "
    "Joyce Henry Lauren Zachary Kelly Douglas Christina Peter Ruth Kyle Joan Noah Virginia "
    "Ethan Judith Jeremy Evelyn Christian Hannah Walter Andrea Keith Megan Austin Cheryl "
    "Roger Jacqueline Terry Madison Sean Teresa Gerald Abigail Carl Sophia Dylan Martha"
).split()
LAST = (
    "Smith Johnson Williams Brown Jones Garcia Miller Davis Rodriguez Martinez Hernandez "
    "Lopez Gonzalez Wilson Anderson Thomas Taylor Moore Jackson Martin Lee Perez Thompson "
    "White Harris Sanchez Clark Ramirez Lewis Robinson Walker Young Allen King Wright Scott "
    "Torres Nguyen Hill Flores Green Adams Nelson Baker Hall Rivera Campbell Mitchell Carter "
    "Roberts Gomez Phillips Evans Turner Diaz Parker Cruz Edwards Collins Reyes Stewart "
    "Morris Morales Murphy Cook Rogers Gutierrez Ortiz Morgan Cooper Peterson Bailey Reed "
    "Kelly Howard Ramos Kim Cox Ward Richardson Watson Brooks Chavez Wood James Bennett Gray "
    "Mendoza Ruiz Hughes Price Alvarez Castillo Sanders Patel Myers Long Ross Foster Jimenez "
    "O'Brien McDonald DeLuca"
).split() + ["Van der Berg"]  # a surname with spaces, kept whole
DOMAINS = ("example.com", "example.org", "example.net", "mail.example.com")


def generate_patients(
    practice_id: int, count: int, *, seed: int, email_share: float = 0.8, chart_prefix: str = "C"
) -> list[Patient]:
    """Charts with realistic names, birth dates, ZIP codes and a few family addresses."""
    rng = random.Random(seed)
    patients: list[Patient] = []
    family_emails: list[str] = []
    today = date.today()
    for n in range(count):
        first, last = rng.choice(FIRST), rng.choice(LAST)
        email = None
        if rng.random() < email_share:
            if family_emails and rng.random() < 0.05:
                email = rng.choice(family_emails)  # a shared family address
            else:
                # "Van der Berg" and "O'Brien" make no valid local part as they are.
                local = f"{first}.{last}.{n}".lower().replace("'", "").replace(" ", "")
                email = f"{local}@{rng.choice(DOMAINS)}"
                if rng.random() < 0.1:
                    family_emails.append(email)
        status = rng.choices(
            [
                ChartStatus.ACTIVE,
                ChartStatus.PROSPECTIVE,
                ChartStatus.INACTIVE,
                ChartStatus.DECEASED,
            ],
            weights=[85, 7, 6, 2],
        )[0]
        patient = Patient(
            practice_id=practice_id,
            chart_number=f"{chart_prefix}{n + 1:06d}",
            first_name=first,
            last_name=last,
            date_of_birth=today - timedelta(days=rng.randint(365, 95 * 365)),
            email=email,
            zip_code=rng.choice(
                [
                    "00000",
                    f"{rng.randint(1000, 99999):05d}",
                    f"{rng.randint(1000, 99999):05d}-{rng.randint(0, 9999):04d}",
                    "K1A 0B1",
                ]
            )
            if rng.random() < 0.95
            else None,
            chart_status=status,
            portal_enabled=status in (ChartStatus.ACTIVE, ChartStatus.PROSPECTIVE)
            and rng.random() < 0.7,
        )
        patient.normalise_keys()
        patients.append(patient)
    return patients


async def insert_patients(patients: list[Patient]) -> None:
    await Patient.bulk_create(patients, batch_size=1000)


async def add_accounts(practice_id: int, share: float, *, seed: int) -> int:
    """Give a share of enabled patients an account with a password nobody knows (one
    hash reused: demo and benchmark data, not credentials anyone can use)."""
    rng = random.Random(seed)
    unusable_hash = pwd_context.hash(new_token())
    ids = await Patient.filter(practice_id=practice_id, portal_enabled=True).values_list(
        "id", flat=True
    )
    chosen = [pid for pid in ids if rng.random() < share]
    now = utcnow()
    accounts = []
    for pid in chosen:
        by_patient = rng.random() < 0.8
        accounts.append(
            PortalAccount(
                patient_id=pid,
                username=f"user{practice_id}x{pid}",
                username_key=f"user{practice_id}x{pid}",
                password_hash=unusable_hash,
                password_origin=PasswordOrigin.PATIENT if by_patient else PasswordOrigin.STAFF,
                password_set_at=now - timedelta(days=rng.randint(0, 30)),
                must_change_password=not by_patient,
                last_login_at=now - timedelta(days=rng.randint(0, 60))
                if by_patient and rng.random() < 0.8
                else None,
            )
        )
    await PortalAccount.bulk_create(accounts, batch_size=1000)
    return len(accounts)


async def build_demo(settings: Settings, count: int) -> str:
    """A demo practice whose patients cover every PortalStatus; returns a staff token.
    Invitations go through the real workflow, so their mail lands in the outbox."""
    practice = await create_practice("Demo Family Clinic")
    # SPEC 9: a profile, so messages give a phone and reply-to; the demo token is an
    # administrator's, so updatePractice can be tried.
    await Practice.filter(id=practice.id).update(
        phone="+16175550100",
        reply_to="front.desk@demo-clinic.example",
        website="https://demo-clinic.example",
        time_zone="America/New_York",
    )
    staff, token = await create_staff(practice.id, "Demo Front Desk", admin=True)
    await insert_patients(generate_patients(practice.id, count, seed=practice.id))
    # One patient in eight reads Spanish; half of those without email have a mobile
    # phone with consent to texts (555-01xx: numbers reserved for fiction).
    ids = await Patient.filter(practice_id=practice.id).order_by("id").values_list("id", flat=True)
    await Patient.filter(id__in=ids[::8]).update(preferred_language="es")
    no_email = (
        await Patient.filter(practice_id=practice.id, email=None)
        .order_by("id")
        .values_list("id", flat=True)
    )
    for n, pid in enumerate(no_email[::2]):
        await Patient.filter(id=pid).update(
            mobile_phone=f"+1617555{100 + n % 100:04d}", sms_consent=True, sms_consent_at=utcnow()
        )
    await add_accounts(practice.id, 0.3, seed=practice.id)
    actor = Actor(ActorType.STAFF, staff.id, practice.id, "127.0.0.1", "demo")
    candidates = await Patient.filter(
        practice_id=practice.id, portal_enabled=True, email__not_isnull=True, account=None
    ).values_list("id", flat=True)
    invite = [str(pid) for pid in candidates[: len(candidates) // 2]]
    await send_invitations(
        actor, BulkRequest(patient_ids=invite), confirm_shared_email=True, settings=settings
    )
    await _expire_some_invitations([int(pid) for pid in invite[::3]])
    return token


async def _expire_some_invitations(patient_ids: list[int]) -> None:
    """Age a third of the demo's invitations past their expiry, so the demo shows
    INVITATION_EXPIRED patients too (their mail counts as sent long ago)."""
    if not patient_ids:
        return
    now = utcnow()
    async with patient_change(SYSTEM, patient_ids):
        conn = connections.get("default")
        await LinkToken.filter(patient_id__in=patient_ids).update(
            created_at=now - timedelta(days=3),
            expires_at=now - timedelta(days=2),
            delivery_status=DeliveryStatus.SENT,
        )
        await OutboxMessage.filter(patient_id__in=patient_ids, status=OutboxStatus.PENDING).update(
            status=OutboxStatus.SENT, sent_at=now - timedelta(days=3), params={}
        )
        # Re-point each patient at its own newest link: the trigger that copies a link's
        # open-until onto the patient (migration 0006) fires on that column.
        ids = ",".join(str(int(pid)) for pid in patient_ids)  # integers only
        sql = f"UPDATE patient SET last_link_id = last_link_id WHERE id IN ({ids})"  # noqa: S608
        await conn.execute_query(sql)
