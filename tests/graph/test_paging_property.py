"""SPEC 8.3, property-based: whatever edits and additions happen between the pages of a
walk, every patient who was not edited is seen exactly once, forwards or backwards."""

from __future__ import annotations

from typing import Any

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from onboarding.admin import create_practice, create_staff
from tests.conftest import Api
from tests.helpers import create_patient

# A few short names, so ties on (last, first) are common and the id decides the order.
NAMES = st.sampled_from(["Ng", "ng", "Abe", "Zed", "Moss", "Åsa", "O'Neil", "moss"])

PAGE = """
query($first: Int, $after: String, $last: Int, $before: String) {
  onboarding(first: $first, after: $after, last: $last, before: $before) {
    edges { node { id } }
    pageInfo { startCursor endCursor hasNextPage hasPreviousPage }
  }
}"""

RENAME = """
mutation($id: ID!, $last: String!, $first: String!) {
  updatePatient(input: {id: $id, lastName: $last, firstName: $first}) { userErrors { code } }
}"""

step = st.one_of(
    st.tuples(st.just("rename"), st.integers(min_value=0), NAMES, NAMES),
    # the patient the cursor came from: the edit that used to hide or repeat the rest
    st.tuples(st.just("rename_cursor"), NAMES, NAMES),
    st.tuples(st.just("add"), NAMES, NAMES),
)
scenario = st.fixed_dictionaries(
    {
        "patients": st.lists(st.tuples(NAMES, NAMES), min_size=1, max_size=14),
        "page_size": st.integers(min_value=1, max_value=4),
        "backward": st.booleans(),
        # edits made before each page after the first
        "edits": st.lists(st.lists(step, max_size=3), max_size=12),
    }
)


@settings(
    max_examples=40,
    deadline=None,
    # the same 40 cases every run (tests stay deterministic); no example database
    derandomize=True,
    database=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)
@given(case=scenario)
async def test_paging_never_skips_or_repeats_an_unedited_patient(
    api: Api, case: dict[str, Any]
) -> None:
    # each example gets a practice of its own (the database is emptied per test only)
    practice = await create_practice("Property Clinic")
    _, token = await create_staff(practice.id, "Front desk")
    counter = iter(range(1, 10_000))
    ids = [
        await create_patient(api, token, n=next(counter), lastName=last, firstName=first)
        for last, first in case["patients"]
    ]
    edited: set[str] = set()
    seen: list[str] = []
    size, backward = case["page_size"], case["backward"]
    cursor = None
    for page_number in range(len(ids) * 4 + 20):
        if page_number and page_number - 1 < len(case["edits"]):
            for action in case["edits"][page_number - 1]:
                if action[0] in ("rename", "rename_cursor"):
                    if action[0] == "rename":
                        target, last, first = ids[action[1] % len(ids)], action[2], action[3]
                    else:
                        target, last, first = seen[-1], action[1], action[2]
                    result = await api.gql(
                        RENAME, {"id": target, "last": last, "first": first}, token
                    )
                    assert result["data"]["updatePatient"]["userErrors"] == []
                    edited.add(target)
                else:
                    await create_patient(
                        api, token, n=next(counter), lastName=action[1], firstName=action[2]
                    )
        variables = (
            {"last": size, "before": cursor} if backward else {"first": size, "after": cursor}
        )
        result = await api.gql(PAGE, variables, token)
        assert "errors" not in result, result
        conn = result["data"]["onboarding"]
        page_ids = [e["node"]["id"] for e in conn["edges"]]
        seen.extend(reversed(page_ids) if backward else page_ids)
        info = conn["pageInfo"]
        more = info["hasPreviousPage"] if backward else info["hasNextPage"]
        if not more:
            break
        cursor = info["startCursor"] if backward else info["endCursor"]
    else:
        raise AssertionError("the walk never ended")

    for pid in ids:
        if pid not in edited:
            assert seen.count(pid) == 1, (pid, case)
