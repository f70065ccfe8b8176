"""createPatient, updatePatient and patient(id): chart fields as the EMR sends them."""

from __future__ import annotations

import asyncio
from datetime import date, timedelta
from typing import Any

from models import Patient as PatientModel
from tests.conftest import Api, Staff
from tests.helpers import (
    CREATE_PATIENT,
    PATIENT,
    chart,
    create_patient,
    enabled_patient,
    invite,
    pk,
)

UPDATE = """
mutation($input: UpdatePatientInput!) {
  updatePatient(input: $input) {
    patient { id chartNumber firstName lastName dateOfBirth email zipCode chartStatus
              portalEnabled portalStatus }
    userErrors { field code message }
  }
}"""


async def create(api: Api, token: str, values: dict[str, Any]) -> dict[str, Any]:
    result = await api.gql(CREATE_PATIENT, {"input": values}, token)
    assert "errors" not in result, result
    return result["data"]["createPatient"]


async def update(api: Api, token: str, values: dict[str, Any]) -> dict[str, Any]:
    result = await api.gql(UPDATE, {"input": values}, token)
    assert "errors" not in result, result
    return result["data"]["updatePatient"]


def codes(payload: dict[str, Any]) -> list[tuple[str, list[str] | None]]:
    return [(e["code"], e["field"]) for e in payload["userErrors"]]


# --- createPatient ---------------------------------------------------------------------


async def test_create_patient_stores_the_chart(api: Api, staff: Staff) -> None:
    # given a chart as the EMR sends it, with stray spaces around the values
    values = chart(7, firstName="  Avery ", email=" Avery.Quinn7@Example.com ", zipCode=" 02139 ")

    # when staff create it
    payload = await create(api, staff.token, values)

    # then it is stored cleaned, portal access off, and readable through patient(id)
    assert payload["userErrors"] == []
    pid = payload["patient"]["id"]
    assert payload["patient"]["portalStatus"] == "DISABLED"
    patient = (await api.gql(PATIENT, {"id": pid}, staff.token))["data"]["patient"]
    assert patient["chartNumber"] == "CH00007"
    assert patient["firstName"] == "Avery"
    assert patient["lastName"] == "Quinn7"
    assert patient["dateOfBirth"] == "1980-04-12"
    assert patient["email"] == "Avery.Quinn7@example.com"
    assert patient["zipCode"] == "02139"
    assert patient["chartStatus"] == "ACTIVE"
    assert patient["portalEnabled"] is False
    assert patient["portalStatus"] == "DISABLED"
    assert patient["emailSharedWith"] == 0
    assert patient["account"] is None
    assert patient["lastInvitation"] is None
    row = await PatientModel.get(id=pk(pid))
    assert row.practice_id == staff.practice_id
    assert row.email_key == "avery.quinn7@example.com"


async def test_create_patient_optional_fields_may_be_absent(api: Api, staff: Staff) -> None:
    # given a chart with neither email nor ZIP code, and a prospective status
    values = chart(2, chartStatus="PROSPECTIVE")
    del values["email"]
    values["zipCode"] = None

    # when staff create it
    payload = await create(api, staff.token, values)

    # then it exists without them
    assert payload["userErrors"] == []
    patient = (await api.gql(PATIENT, {"id": payload["patient"]["id"]}, staff.token))["data"][
        "patient"
    ]
    assert patient["email"] is None
    assert patient["zipCode"] is None
    assert patient["chartStatus"] == "PROSPECTIVE"


async def test_create_patient_chart_status_defaults_to_active(api: Api, staff: Staff) -> None:
    values = chart(3)
    del values["chartStatus"]
    payload = await create(api, staff.token, values)
    assert payload["userErrors"] == []
    patient = await PatientModel.get(id=pk(payload["patient"]["id"]))
    assert patient.chart_status == "ACTIVE"


TOMORROW = (date.today() + timedelta(days=1)).isoformat()


BAD_CHART_FIELDS = [
    ("chartNumber", ""),
    ("chartNumber", "   "),
    ("chartNumber", "C" * 65),
    ("chartNumber", "CH\x0001"),
    ("firstName", ""),
    ("firstName", "A" * 101),
    ("firstName", "Ann\nSmith"),
    ("lastName", "  "),
    ("lastName", "Q" * 101),
    ("lastName", "Qu\x7finn"),
    ("dateOfBirth", TOMORROW),
    ("dateOfBirth", "1879-12-31"),
    ("email", "not-an-address"),
    ("email", "two@@example.com"),
    ("email", "a@example.com\r\nBcc: x@example.com"),
    ("email", "a" * 250 + "@example.com"),
    ("zipCode", "!!!"),
    ("zipCode", "1"),
    ("zipCode", "0" * 17),
    ("zipCode", "02139\x00"),
]


async def test_create_patient_refuses_each_bad_field(api: Api, staff: Staff) -> None:
    for field, value in BAD_CHART_FIELDS:
        # given one bad field in an otherwise valid chart
        values = chart(1, **{field: value})

        # when staff create it
        payload = await create(api, staff.token, values)

        # then exactly that field is reported as INVALID_INPUT, and nothing is written
        assert payload["patient"] is None, (field, value)
        assert codes(payload) == [("INVALID_INPUT", [field])], (field, value)
        assert payload["userErrors"][0]["message"]
    assert await PatientModel.all().count() == 0


async def test_create_patient_reports_every_bad_field_at_once(api: Api, staff: Staff) -> None:
    values = chart(1, chartNumber="", firstName=" ", email="nope", zipCode="???")
    payload = await create(api, staff.token, values)
    assert payload["patient"] is None
    assert sorted(codes(payload)) == [
        ("INVALID_INPUT", ["chartNumber"]),
        ("INVALID_INPUT", ["email"]),
        ("INVALID_INPUT", ["firstName"]),
        ("INVALID_INPUT", ["zipCode"]),
    ]
    assert await PatientModel.all().count() == 0


async def test_create_patient_missing_required_field_is_a_graphql_error(
    api: Api, staff: Staff
) -> None:
    values = chart(1)
    del values["lastName"]
    result = await api.gql(CREATE_PATIENT, {"input": values}, staff.token)
    assert result.get("data") is None
    assert "lastName" in result["errors"][0]["message"]
    assert await PatientModel.all().count() == 0


async def test_create_patient_refuses_duplicate_chart_number(
    api: Api, staff: Staff, other_staff: Staff
) -> None:
    # given a chart number in use in the practice
    await create_patient(api, staff.token, n=1)

    # when staff create another chart with that number (spaces around it do not help)
    payload = await create(api, staff.token, chart(2, chartNumber=" CH00001 "))

    # then DUPLICATE_CHART_NUMBER, and only the first chart exists
    assert payload["patient"] is None
    assert codes(payload) == [("DUPLICATE_CHART_NUMBER", ["chartNumber"])]
    assert await PatientModel.filter(practice_id=staff.practice_id).count() == 1

    # and another practice may use the same number
    other = await create(api, other_staff.token, chart(1))
    assert other["userErrors"] == []


async def test_create_patient_duplicate_chart_number_under_a_race(api: Api, staff: Staff) -> None:
    # given two requests for the same chart number at the same time
    requests = [create(api, staff.token, chart(1, firstName=f"Racer{i}")) for i in range(4)]

    # when they run concurrently
    payloads = await asyncio.gather(*requests)

    # then exactly one creates the chart and the others get DUPLICATE_CHART_NUMBER
    winners = [p for p in payloads if p["userErrors"] == []]
    losers = [p for p in payloads if p["userErrors"]]
    assert len(winners) == 1
    assert len(losers) == 3
    for p in losers:
        assert p["patient"] is None
        assert codes(p) == [("DUPLICATE_CHART_NUMBER", ["chartNumber"])]
    assert await PatientModel.filter(chart_number="CH00001").count() == 1


async def test_chart_numbers_are_unique_ignoring_case(api: Api, staff: Staff) -> None:
    # given DUP-x in the practice
    await create_patient(api, staff.token, n=1, chartNumber="DUP-x")
    # when staff create dup-x, or rename another chart to Dup-X
    created = await create(api, staff.token, chart(2, chartNumber="dup-x"))
    other = await create_patient(api, staff.token, n=3)
    renamed = await api.gql(UPDATE, {"input": {"id": other, "chartNumber": "Dup-X"}}, staff.token)
    # then both are refused and nothing changed
    assert codes(created) == [("DUPLICATE_CHART_NUMBER", ["chartNumber"])]
    assert codes(renamed["data"]["updatePatient"]) == [("DUPLICATE_CHART_NUMBER", ["chartNumber"])]
    numbers = {p.chart_number for p in await PatientModel.filter(practice_id=staff.practice_id)}
    assert numbers == {"DUP-x", "CH00003"}
    # and a chart may change the case of its own number
    pid = await create_patient(api, staff.token, n=4, chartNumber="abc-4")
    own = await api.gql(UPDATE, {"input": {"id": pid, "chartNumber": "ABC-4"}}, staff.token)
    assert own["data"]["updatePatient"]["userErrors"] == []


# --- updatePatient ---------------------------------------------------------------------


async def test_update_patient_changes_only_given_fields(api: Api, staff: Staff) -> None:
    # given a chart
    pid = await create_patient(api, staff.token, n=1)

    # when staff change the last name, ZIP code and status
    payload = await update(
        api,
        staff.token,
        {"id": pid, "lastName": " Rivera ", "zipCode": "K1A 0B1", "chartStatus": "PROSPECTIVE"},
    )

    # then those change and nothing else
    assert payload["userErrors"] == []
    assert payload["patient"] == {
        "id": pid,
        "chartNumber": "CH00001",
        "firstName": "Avery",
        "lastName": "Rivera",
        "dateOfBirth": "1980-04-12",
        "email": "avery.quinn1@example.com",
        "zipCode": "K1A 0B1",
        "chartStatus": "PROSPECTIVE",
        "portalEnabled": False,
        "portalStatus": "DISABLED",
    }
    row = await PatientModel.get(id=pk(pid))
    assert row.last_name_key == "rivera"


async def test_update_patient_with_no_changes_is_a_no_op(api: Api, staff: Staff) -> None:
    pid = await create_patient(api, staff.token, n=1)
    payload = await update(api, staff.token, {"id": pid, "firstName": "Avery"})
    assert payload["userErrors"] == []
    assert payload["patient"]["firstName"] == "Avery"


async def test_update_patient_clears_email_with_null_or_empty(api: Api, staff: Staff) -> None:
    first = await create_patient(api, staff.token, n=1)
    second = await create_patient(api, staff.token, n=2)
    payload = await update(api, staff.token, {"id": first, "email": None})
    assert payload["userErrors"] == []
    assert payload["patient"]["email"] is None
    payload = await update(api, staff.token, {"id": second, "email": ""})
    assert payload["userErrors"] == []
    assert payload["patient"]["email"] is None
    assert await PatientModel.filter(email_key__isnull=True).count() == 2


BAD_UPDATES: list[tuple[str, Any]] = [
    ("chartNumber", None),
    ("chartNumber", ""),
    ("firstName", None),
    ("firstName", "A" * 101),
    ("lastName", "   "),
    ("lastName", "Tab\tName"),
    ("dateOfBirth", None),
    ("dateOfBirth", TOMORROW),
    ("dateOfBirth", "1800-01-01"),
    ("email", "nobody"),
    ("zipCode", "$$$$$"),
    ("chartStatus", None),
]


async def test_update_patient_refuses_each_bad_field(api: Api, staff: Staff) -> None:
    # given a chart
    pid = await create_patient(api, staff.token, n=1)
    before = await PatientModel.get(id=pk(pid)).values()

    for field, value in BAD_UPDATES:
        # when staff send one bad field (alongside a good one)
        payload = await update(api, staff.token, {"id": pid, "firstName": "Blair", field: value})

        # then exactly that field is refused and nothing changes, not even the good field
        assert payload["patient"] is None, (field, value)
        assert codes(payload) == [("INVALID_INPUT", [field])], (field, value)
        assert await PatientModel.get(id=pk(pid)).values() == before


async def test_update_patient_refuses_a_taken_chart_number(api: Api, staff: Staff) -> None:
    await create_patient(api, staff.token, n=1)
    second = await create_patient(api, staff.token, n=2)
    payload = await update(api, staff.token, {"id": second, "chartNumber": "CH00001"})
    assert payload["patient"] is None
    assert codes(payload) == [("DUPLICATE_CHART_NUMBER", ["chartNumber"])]
    assert (await PatientModel.get(id=pk(second))).chart_number == "CH00002"


async def test_update_patient_duplicate_chart_number_under_a_race(api: Api, staff: Staff) -> None:
    # given two charts that both want the number CH09999 at the same moment
    first = await create_patient(api, staff.token, n=1)
    second = await create_patient(api, staff.token, n=2)

    # when both updates run concurrently
    payloads = await asyncio.gather(
        update(api, staff.token, {"id": first, "chartNumber": "CH09999"}),
        update(api, staff.token, {"id": second, "chartNumber": "CH09999"}),
    )

    # then exactly one wins
    assert sorted(len(p["userErrors"]) for p in payloads) == [0, 1]
    [loser] = [p for p in payloads if p["userErrors"]]
    assert codes(loser) == [("DUPLICATE_CHART_NUMBER", ["chartNumber"])]
    assert await PatientModel.filter(chart_number="CH09999").count() == 1


async def test_update_patient_unknown_id_is_not_found(
    api: Api, staff: Staff, other_staff: Staff
) -> None:
    await create_patient(api, staff.token, n=1)
    theirs = await create_patient(api, other_staff.token, n=2)
    for bad_id in ["999999", "abc", "-1", "0", "1.5", "", "99999999999999999999", theirs]:
        payload = await update(api, staff.token, {"id": bad_id, "firstName": "Blair"})
        assert payload["patient"] is None, bad_id
        assert codes(payload) == [("NOT_FOUND", ["id"])], bad_id
    assert await PatientModel.filter(first_name="Blair").count() == 0


async def test_update_patient_email_change_revokes_outstanding_links(
    api: Api, staff: Staff
) -> None:
    # given an invited patient
    pid = await enabled_patient(api, staff.token, n=1)
    sent = await invite(api, staff.token, pid)
    assert sent["userErrors"] == []
    before = (await api.gql(PATIENT, {"id": pid}, staff.token))["data"]["patient"]
    assert before["portalStatus"] == "INVITED"
    assert before["lastInvitation"]["revokedAt"] is None

    # when staff change the email on file
    payload = await update(api, staff.token, {"id": pid, "email": "new.address@example.com"})

    # then the outstanding link is revoked and the patient needs a new invitation
    assert payload["userErrors"] == []
    assert payload["patient"]["email"] == "new.address@example.com"
    assert payload["patient"]["portalStatus"] == "INVITATION_EXPIRED"
    after = (await api.gql(PATIENT, {"id": pid}, staff.token))["data"]["patient"]
    assert after["lastInvitation"]["revokedAt"] is not None
    assert after["lastInvitation"]["sentTo"] == "avery.quinn1@example.com"
    row = await PatientModel.get(id=pk(pid))
    assert row.email_changed_at is not None


async def test_update_patient_same_email_in_other_case_keeps_links(api: Api, staff: Staff) -> None:
    # given an invited patient
    pid = await enabled_patient(api, staff.token, n=1)
    assert (await invite(api, staff.token, pid))["userErrors"] == []

    # when staff retype the address with different capitals
    payload = await update(api, staff.token, {"id": pid, "email": "Avery.Quinn1@example.com"})

    # then the address is the same mailbox: the link stays usable
    assert payload["userErrors"] == []
    after = (await api.gql(PATIENT, {"id": pid}, staff.token))["data"]["patient"]
    assert after["lastInvitation"]["revokedAt"] is None
    assert after["portalStatus"] == "INVITED"


async def test_update_patient_to_inactive_revokes_links(api: Api, staff: Staff) -> None:
    pid = await enabled_patient(api, staff.token, n=1)
    assert (await invite(api, staff.token, pid))["userErrors"] == []
    payload = await update(api, staff.token, {"id": pid, "chartStatus": "DECEASED"})
    assert payload["userErrors"] == []
    after = (await api.gql(PATIENT, {"id": pid}, staff.token))["data"]["patient"]
    assert after["lastInvitation"]["revokedAt"] is not None


# --- patient(id) -------------------------------------------------------------------------


async def test_patient_query_reads_one_chart(api: Api, staff: Staff) -> None:
    first = await create_patient(api, staff.token, n=1)
    await create_patient(api, staff.token, n=2, email="avery.quinn1@example.com")
    patient = (await api.gql(PATIENT, {"id": first}, staff.token))["data"]["patient"]
    assert patient["id"] == first
    assert patient["chartNumber"] == "CH00001"
    assert patient["emailSharedWith"] == 1


async def test_patient_query_unknown_id_is_null(api: Api, staff: Staff, other_staff: Staff) -> None:
    await create_patient(api, staff.token, n=1)
    theirs = await create_patient(api, other_staff.token, n=2)
    for bad_id in ["424242", "abc", "0", "-5", " 1", "１", theirs]:
        result = await api.gql(PATIENT, {"id": bad_id}, staff.token)
        assert result == {"data": {"patient": None}}, bad_id
