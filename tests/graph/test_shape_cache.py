"""Validation's cache (graph.limits.cached_validation) is keyed by the document's
identity, not its recursive hash (issue 15): the same document object is validated
once, an equal document parsed again is validated again with the same answer. Our
limits answer first; graphql-core's rules run only for documents that pass them."""

from __future__ import annotations

from graphql import parse, specified_rules

from core.settings import Settings
from graph.limits import cached_validation, shape_errors
from graph.schema import build_schema

SETTINGS = Settings(_env_file=None)  # type: ignore[call-arg]
SCHEMA = build_schema(SETTINGS)._schema
RULES = tuple(specified_rules)
DEEP = "{ " + "a { " * 40 + "b" + " }" * 40 + " }"


def test_the_same_document_is_validated_once_and_an_equal_one_again() -> None:
    validate = cached_validation(SETTINGS, maxsize=4)
    document = parse(DEEP)
    first = validate(SCHEMA, document, RULES)
    # Too deep: our limit answers (graphql-core would name the unknown field `a`).
    assert first and [e.message for e in first] == [
        e.message for e in shape_errors(document, SETTINGS)
    ]
    assert validate(SCHEMA, document, RULES) is first  # from the cache
    again = validate(SCHEMA, parse(DEEP), RULES)  # equal text, another object
    assert again is not first
    assert [e.message for e in again] == [e.message for e in first]

    unknown = parse("{ noSuchField }")
    errors = validate(SCHEMA, unknown, RULES)
    assert [e.message for e in errors] == ["Cannot query field 'noSuchField' on type 'Query'."]
    assert validate(SCHEMA, unknown, RULES) is errors
    assert validate(SCHEMA, parse("{ __typename }"), RULES) == []
