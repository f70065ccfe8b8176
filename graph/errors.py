from __future__ import annotations

from collections.abc import Iterable

import strawberry
from graphql import GraphQLError

from onboarding.errors import ErrorCode, Problem

strawberry.enum(ErrorCode, name="ErrorCode", description="Why a mutation refused.")


@strawberry.type(description="A business error: the request was understood and refused.")
class UserError:
    field: list[str] | None = strawberry.field(description="Path to the input field at fault.")
    code: ErrorCode
    message: str

    @classmethod
    def from_problem(cls, problem: Problem) -> UserError:
        return cls(
            field=list(problem.field) if problem.field else None,
            code=problem.code,
            message=problem.message,
        )


def user_errors(problems: Iterable[Problem]) -> list[UserError]:
    return [UserError.from_problem(p) for p in problems]


class BadRequest(GraphQLError):
    """Malformed arguments of a query (bad cursor, page size): a top-level error whose
    message is safe to show, kept visible by the masking predicate."""

    def __init__(self, message: str) -> None:
        super().__init__(message, extensions={"code": "BAD_USER_INPUT"})


class Unauthenticated(GraphQLError):
    def __init__(self, message: str = "A valid staff token is required.") -> None:
        super().__init__(message, extensions={"code": "UNAUTHENTICATED"})


class PasswordChangeRequired(GraphQLError):
    """A session opened with a staff-set password may only change it (or log out)."""

    def __init__(self) -> None:
        super().__init__(
            "Change the password first: this session may only call changePassword or logout.",
            extensions={"code": ErrorCode.PASSWORD_CHANGE_REQUIRED.value},
        )


class RateLimited(GraphQLError):
    """A query (which has no payload for userErrors) over its rate budget."""

    def __init__(self, message: str = "Too many requests; slow down.") -> None:
        super().__init__(message, extensions={"code": "RATE_LIMITED"})
