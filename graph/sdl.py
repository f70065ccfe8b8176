"""Print the schema's SDL; ``python -m graph.sdl > schema.graphql`` regenerates the file
that CI compares with the code."""

from strawberry.printer import print_schema

from core.settings import Settings
from graph.schema import build_schema


def sdl() -> str:
    return print_schema(build_schema(Settings(_env_file=None))) + "\n"  # type: ignore[call-arg]


if __name__ == "__main__":
    print(sdl(), end="")
