"""The shape check's cache (graph.limits.cached_shape_check) is keyed by the document's
identity, not its recursive hash (issue 15): the same document object is checked once,
an equal document parsed again is checked again with the same answer."""

from __future__ import annotations

from graphql import parse

from core.settings import Settings
from graph.limits import cached_shape_check, shape_errors

SETTINGS = Settings(_env_file=None)  # type: ignore[call-arg]
DEEP = "{ " + "a { " * 40 + "b" + " }" * 40 + " }"


def test_the_same_document_is_checked_once_and_an_equal_one_again() -> None:
    check = cached_shape_check(SETTINGS, maxsize=4)
    document = parse(DEEP)
    first = check(document)
    assert first and [e.message for e in first] == [
        e.message for e in shape_errors(document, SETTINGS)
    ]
    assert check(document) is first  # from the cache
    again = check(parse(DEEP))  # equal text, another object: computed again
    assert again is not first
    assert [e.message for e in again] == [e.message for e in first]
    assert check(parse("{ __typename }")) == []

