"""A standalone fake of WeChat's token and template-message API, for development and tests."""

from .app import create_fake_app
from .config import FakeConfig
from .server import make_fake_server, serve

__all__ = ["FakeConfig", "create_fake_app", "make_fake_server", "serve"]
