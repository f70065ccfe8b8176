"""Global object ids (Relay, SPEC 8.2): base64 of ``Type:number``. Written here, below
``graph/``, because the EMR's webhook payloads carry the same ids as the API."""

from __future__ import annotations

import base64


def global_id_text(type_name: str, pk: int) -> str:
    return base64.b64encode(f"{type_name}:{pk}".encode()).decode("ascii")


def patient_global_id(pk: int) -> str:
    return global_id_text("Patient", pk)
