"""What the web tests share: a test client of the app built from the test settings."""

from __future__ import annotations

import pytest
import redis
from flask.testing import FlaskClient

from notifier.config import Settings
from notifier.web.app import create_app


@pytest.fixture
def client(settings: Settings, redis_client: redis.Redis) -> FlaskClient:
    """The app on the test's private Redis; a module needing other settings overrides this."""
    return create_app(settings).test_client()
