"""Global object ids (Relay, SPEC 8.2): base64 of ``Type:number``. Written here, below
``graph/``, because the EMR's webhook payloads carry the same ids as the API."""

from __future__ import annotations

from binascii import b2a_base64


def global_id_text(type_name: str, pk: int) -> str:
    # base64.b64encode is this call behind a Python wrapper; an Onboarding page makes
    # up to 100 of these ids (issue 15).
    return b2a_base64(f"{type_name}:{pk}".encode(), newline=False).decode("ascii")


def patient_global_id(pk: int) -> str:
    return global_id_text("Patient", pk)
