"""`notifier campaigns replay`: a campaign's failures queued again from an operator's shell."""

from __future__ import annotations

from collections.abc import Iterator

import pytest
import redis
from click.testing import CliRunner

from notifier.cli.main import main as cli
from notifier.config import current
from notifier.devtools.redis_server import RedisServer
from notifier.store.campaigns import CampaignStore, Outcome, Settled
from notifier.store.keys import PREFIX, campaign_key
from tests.conftest import QueueView

CAMPAIGN_ID = "a" * 32


@pytest.fixture
def runner(redis_server: RedisServer, monkeypatch: pytest.MonkeyPatch) -> Iterator[CliRunner]:
    """The command on the test's private Redis: settings are read once per process, so the
    cached ones are dropped before and after."""
    monkeypatch.setenv("REDIS_URL", redis_server.url)
    current.cache_clear()
    assert current().redis_url == redis_server.url
    yield CliRunner()
    monkeypatch.undo()
    current.cache_clear()


def test_replay_queues_dead_recipients_and_failed_ones_with_the_flag(
    runner: CliRunner, redis_client: redis.Redis
) -> None:
    redis_client.hset(campaign_key(PREFIX, CAMPAIGN_ID), mapping={"state": "finished",
                      "template_id": "TPL", "count": 2, "chunks": 1, "created": 1.0})  # fmt: skip
    CampaignStore(redis_client, 3600).record_many(CAMPAIGN_ID, [
        Settled(0, Outcome("dead", 5, None, -1), "oDead00000", "system busy", None),
        Settled(1, Outcome("failed", 1, None, 40037), "oFail00001", "invalid template_id", None),
    ], shared={"template_id": "TPL", "data": {"k": {"value": "v"}}})  # fmt: skip
    first = runner.invoke(cli, ["campaigns", "replay", CAMPAIGN_ID])
    assert first.exit_code == 0, first.output
    assert f"queued 1 recipient(s) of campaign {CAMPAIGN_ID} again" in first.output
    again = runner.invoke(cli, ["campaigns", "replay", CAMPAIGN_ID])
    assert "queued 0 recipient(s)" in again.output
    flagged = runner.invoke(cli, ["campaigns", "replay", CAMPAIGN_ID, "--include-failed"])
    assert "queued 1 recipient(s)" in flagged.output
    assert len(QueueView(redis_client, "notifier.campaigns").tasks) == 2


@pytest.mark.parametrize("campaign_id", ["b" * 32, "nope"])
def test_an_unknown_campaign_is_an_error(
    runner: CliRunner, redis_client: redis.Redis, campaign_id: str
) -> None:
    result = runner.invoke(cli, ["campaigns", "replay", campaign_id])
    assert result.exit_code == 1
    assert f"no campaign {campaign_id}" in result.output
