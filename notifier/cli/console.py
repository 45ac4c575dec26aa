"""Operator commands: inspect a message, replay dead letters and campaign failures, the quota."""

from __future__ import annotations

import json
from urllib.parse import urlsplit

import click
import redis

from notifier.config import current
from notifier.store.campaign_ids import split_recipient_id
from notifier.store.messages import iso
from notifier.store.stores import Stores, open_stores


def _console() -> Stores:
    settings = current()
    click.echo(f"redis: {_where(settings.redis_url)}", err=True)
    stores = open_stores(settings)
    try:
        stores.connection.ping()
    except redis.RedisError as exc:
        raise click.ClickException(
            f"cannot reach Redis at REDIS_URL: {type(exc).__name__}"
        ) from None
    return stores


def _where(url: str) -> str:
    """The Redis URL without its password, so operators see which Redis they act on."""
    parts = urlsplit(url)
    host = parts.hostname or ""
    return f"{parts.scheme}://{host}:{parts.port or 6379}{parts.path}" if host else url


def _progress(done: int, total: int) -> None:
    click.echo(f"  queued {done} of {total}", err=True)


@click.command()
@click.argument("message_id")
def status(message_id: str) -> None:
    """Show a message's status and history as JSON."""
    console = _console()
    recipient = split_recipient_id(message_id)
    if recipient is not None:
        view = console.campaigns.recipient_view(*recipient)
    else:
        record = console.messages.get(message_id)
        view = record.as_dict(with_payload=True) if record else None
    if view is None:
        raise click.ClickException(f"no message {message_id} (unknown, or past its retention)")
    click.echo(json.dumps(view, ensure_ascii=False, indent=2))


@click.group("dead-letters")
def dead_letters() -> None:
    """Failed and dead messages: list them, send them again."""


@dead_letters.command("list")
@click.option("--json", "as_json", is_flag=True, help="One JSON object per line, with payload.")
@click.option("--limit", type=int, default=100, show_default=True)
@click.option("--offset", type=int, default=0, show_default=True, help="Skip this many first.")
def list_dead(as_json: bool, limit: int, offset: int) -> None:
    """List dead letters, oldest first."""
    console = _console()
    records = console.replayer.list(console.messages.dead_index, limit, max(offset, 0))
    for record in records:
        if as_json:
            click.echo(json.dumps(record.as_dict(with_payload=True), ensure_ascii=False))
        else:
            when = iso(record.history[-1]["at"]) if record.history else "-"
            click.echo(
                f"{record.id}  {record.status:6}  errcode {record.errcode}  "
                f"attempts {record.attempts}  {when}  {record.errmsg or ''}"
            )
    if not as_json:
        total = console.messages.count(console.messages.dead_index)
        shown = f"{offset + 1}-{offset + len(records)} of " if records else ""
        click.echo(f"{shown}{total} dead letter(s)", err=True)


@dead_letters.command("replay")
@click.argument("message_id", required=False)
@click.option("--all", "everything", is_flag=True, help="Replay every dead letter.")
def replay_dead(message_id: str | None, everything: bool) -> None:
    """Queue a dead letter (or --all) again, keeping its id and history."""
    if bool(message_id) == everything:
        raise click.UsageError("give one MESSAGE_ID or --all")
    console = _console()
    if everything:
        count = console.replayer.replay_all(console.messages.dead_index, progress=_progress)
        click.echo(f"replayed {count} message(s)")
        return
    assert message_id is not None
    if not console.replayer.replay(message_id):
        raise click.ClickException(f"{message_id} is not a failed, dead or deferred message")
    click.echo(f"replayed {message_id}")


@click.group()
def campaigns() -> None:
    """Campaigns (batches): send their failures again."""


@campaigns.command("replay")
@click.argument("campaign_id")
@click.option(
    "--include-failed", is_flag=True, help="Failed recipients too (errcodes since fixed)."
)
def replay_campaign(campaign_id: str, include_failed: bool) -> None:
    """Queue a campaign's dead recipients again, under their own ids."""
    console = _console()
    queued = console.campaigns.replay(campaign_id, include_failed)  # None: no such campaign
    if queued is None:
        raise click.ClickException(f"no campaign {campaign_id} (unknown, or past its retention)")
    click.echo(f"queued {queued} recipient(s) of campaign {campaign_id} again")


@click.group()
def quota() -> None:
    """The daily-quota pause (errcode 45009)."""


@quota.command("status")
def quota_status() -> None:
    """Show whether sending is paused and how many messages are deferred."""
    console = _console()
    if console.quota is None:
        raise click.ClickException("WECHAT_APP_ID is not set: the pause is kept per account")
    pause = console.quota.paused()
    deferred = console.messages.count(console.messages.deferred_index)
    chunks = console.deferred.count()
    if pause:
        click.echo(
            f"paused since {iso(pause['since'])} until {iso(pause['until'])}: {pause['errmsg']}"
        )
    else:
        click.echo("not paused")
    click.echo(f"{deferred} deferred message(s), {chunks} deferred campaign chunk(s)")


@quota.command("resume")
def quota_resume() -> None:
    """Lift the pause now (after clearing the quota in WeChat) and queue deferred messages."""
    console = _console()
    if console.quota is None:
        raise click.ClickException("WECHAT_APP_ID is not set: the pause is kept per account")
    lifted = console.quota.resume()
    click.echo("pause lifted" if lifted else "no pause was in force")
    count = console.replayer.resume_deferred("resumed by an operator", progress=_progress)
    click.echo(f"resumed {count} deferred message(s)")
