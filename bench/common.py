"""Small pieces the benchmark modules share: paths, URLs, JSON I/O, loopback checks."""

from __future__ import annotations

import json
import socket
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

ROOT = Path(__file__).resolve().parent.parent
RESULTS = ROOT / "bench" / "results"
LOOPBACK = {"127.0.0.1", "localhost", "::1"}

DEFAULT_POSTGRES_URL = "postgres://postgres@127.0.0.1:5432/portal_bench"


def require_loopback(url: str) -> None:
    """The benchmark only ever talks to this machine."""
    host = urlsplit(url).hostname
    if url.startswith("sqlite"):
        return
    if host not in LOOPBACK:
        raise SystemExit(f"refusing a non-loopback address in {url!r}: the benchmark is local only")


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def write_json(path: Path, data: Any) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(data, indent=1, default=str))


def read_json(path: Path) -> Any:
    return json.loads(path.read_text())


def sqlite_path(url: str) -> str:
    """``sqlite:///abs/path`` or ``sqlite://relative`` → the file path Tortoise opens."""
    assert url.startswith("sqlite://")
    return url[len("sqlite://") :]
