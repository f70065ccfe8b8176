"""The ASGI entry point uvicorn imports: settings from the environment."""

from core.settings import Settings
from graph.app import create_app

app = create_app(Settings())
