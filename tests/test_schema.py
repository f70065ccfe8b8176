"""The checked-in artefacts match the code: SDL and migrations."""

import subprocess
import sys
from pathlib import Path

from graph.sdl import sdl

ROOT = Path(__file__).resolve().parent.parent


def test_schema_graphql_is_generated_from_the_code() -> None:
    # given the checked-in schema; when the code prints its SDL; then they are equal
    checked_in = (ROOT / "schema.graphql").read_text()
    assert checked_in == sdl(), "schema.graphql is stale: run `make schema`"


def test_models_have_no_unmigrated_changes(tmp_path: Path) -> None:
    # given the models and models/migrations; when Tortoise looks for changes
    result = subprocess.run(
        [sys.executable, "-m", "tortoise", "-c", "models.database.TORTOISE_ORM", "makemigrations"],
        cwd=ROOT, capture_output=True, text=True, timeout=120,
    )
    # then it finds none (and wrote no new migration file)
    assert result.returncode == 0, result.stderr
    assert "No changes detected" in result.stdout, result.stdout + result.stderr
