"""Issue 10 item 7: the development GraphiQL page loads only assets installed with the
package (no CDN, works offline) under a tight Content-Security-Policy. The browser half
(offline load, no header in localStorage) is tests/browser/test_graphiql_browser.py."""

from __future__ import annotations

import fnmatch
import re
import tomllib
from html.parser import HTMLParser
from pathlib import Path

import pytest

from graph.app import GRAPHIQL_ASSETS, GRAPHIQL_ASSETS_PATH
from tests.conftest import Api

REPO = Path(__file__).resolve().parents[2]
PRODUCTION = {"env": "production", "allow_insecure_defaults": True}


class References(HTMLParser):
    """Every URL the page makes the browser load: script src, link href, img src…"""

    def __init__(self) -> None:
        super().__init__()
        self.urls: list[str] = []
        self.inline_scripts = 0
        self._in_script = False

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        for name, value in attrs:
            if name in ("src", "href", "srcset", "data", "action") and value is not None:
                self.urls.append(value)
        self._in_script = tag == "script"

    def handle_endtag(self, tag: str) -> None:
        self._in_script = False

    def handle_data(self, data: str) -> None:
        if self._in_script and data.strip():
            self.inline_scripts += 1


async def graphiql_page(api: Api) -> tuple[str, dict[str, str]]:
    response = await api.client.get("/graphql", headers={"accept": "text/html"})
    assert response.status_code == 200
    assert response.headers["content-type"].startswith("text/html")
    return response.text, dict(response.headers)


async def test_page_references_only_same_origin_assets(api: Api) -> None:
    html, _ = await graphiql_page(api)
    page = References()
    page.feed(html)
    assert page.urls, "the page loads nothing?"
    for url in page.urls:
        assert url == "data:," or url.startswith(GRAPHIQL_ASSETS_PATH + "/"), url
    # No absolute URL anywhere in the page, to any host (unpkg, jsdelivr, esm.sh…).
    assert not re.search(r"(https?:)?//[a-z0-9.-]+", html, re.IGNORECASE), html
    assert page.inline_scripts == 0  # so the policy can forbid inline scripts


async def test_every_referenced_asset_is_served_with_its_type(api: Api) -> None:
    html, _ = await graphiql_page(api)
    page = References()
    page.feed(html)
    expected = {".js": "text/javascript", ".css": "text/css"}
    served = 0
    for url in page.urls:
        if url.startswith("data:"):
            continue
        response = await api.client.get(url)
        assert response.status_code == 200, url
        suffix = Path(url).suffix
        assert response.headers["content-type"].split(";")[0] == expected[suffix], url
        assert response.headers["x-content-type-options"] == "nosniff"
        assert len(response.content) > 100
        served += 1
    # React, ReactDOM, GraphiQL, our start-up script, GraphiQL's and our style sheet.
    assert served == 6


async def test_content_security_policy_allows_this_origin_only(api: Api) -> None:
    _, headers = await graphiql_page(api)
    policy = headers["content-security-policy"]
    directives = dict(
        (part.split()[0], part.split()[1:]) for part in policy.split(";") if part.strip()
    )
    assert directives["default-src"] == ["'none'"]
    assert directives["script-src"] == ["'self'"]  # no inline script, no eval, no CDN
    assert directives["connect-src"] == ["'self'"]
    assert directives["frame-ancestors"] == ["'none'"]
    assert not re.search(r"https?:|\*|//", policy), policy


async def test_the_page_never_asks_graphiql_to_persist_headers(api: Api) -> None:
    """The start-up script turns header persistence off and hands GraphiQL a storage
    that strips headers (the browser test proves it end to end)."""
    response = await api.client.get(f"{GRAPHIQL_ASSETS_PATH}/portal-graphiql.js")
    assert response.status_code == 200
    assert "shouldPersistHeaders: false" in response.text
    assert "storage: storage" in response.text


@pytest.mark.parametrize("settings_overrides", [PRODUCTION])
async def test_no_assets_in_production(api: Api) -> None:
    response = await api.client.get(f"{GRAPHIQL_ASSETS_PATH}/graphiql.min.js")
    assert response.status_code == 404


async def test_assets_do_not_escape_their_folder(api: Api) -> None:
    for path in ("/../app.py", "/%2e%2e/app.py", "/..%2fapp.py"):
        response = await api.client.get(GRAPHIQL_ASSETS_PATH + path)
        assert response.status_code == 404, path


def test_assets_are_package_data() -> None:
    """A non-editable install carries every file the page needs: each is matched by a
    package-data pattern of the `graph` package."""
    config = tomllib.loads((REPO / "pyproject.toml").read_text("utf-8"))
    patterns = config["tool"]["setuptools"]["package-data"]["graph"]
    graph_dir = REPO / "graph"
    files = [p for p in GRAPHIQL_ASSETS.iterdir() if p.is_file()] + [
        graph_dir / "static" / "graphiql.html"
    ]
    for path in files:
        relative = path.relative_to(graph_dir).as_posix()
        assert any(fnmatch.fnmatch(relative, pattern) for pattern in patterns), relative
