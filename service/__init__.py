"""The FastAPI service: loads the artifact bundle and classifies uploaded photos."""

from service.app import create_app
from service.settings import Settings

__all__ = ["Settings", "create_app"]
