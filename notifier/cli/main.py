"""The `notifier` command: a signed test send, new secrets; operator and dev tool commands."""

from __future__ import annotations

import sys

import click
import requests

from notifier.client import NotifierClient, template_message
from notifier.config import client_endpoint, client_secret
from notifier.signature import new_secret


@click.group()
def main() -> None:
    """Deliver WeChat template messages from signed webhooks."""


@main.command()
def secret() -> None:
    """Print a fresh webhook secret (whsec_<base64>) for a new deployment."""
    click.echo(new_secret())


@main.command()
@click.option("--to", "touser", required=True, help="The follower's openid.")
@click.option("--template", "template_id", required=True, help="The template id.")
@click.option("--data", "pairs", multiple=True, required=True, help="A field as key=value.")
@click.option("--url", default=None, help="A link opened when the message is tapped.")
@click.option(
    "--endpoint",
    default=client_endpoint,
    show_default="$NOTIFIER_URL or http://127.0.0.1:$PORT",
    help="The receiver's base URL.",
)
def send(
    touser: str, template_id: str, pairs: tuple[str, ...], url: str | None, endpoint: str
) -> None:
    """Send one signed test message (the secret is read from $WEBHOOK_SECRET)."""
    secret = client_secret()
    if secret is None:
        raise click.UsageError("WEBHOOK_SECRET is not set")
    fields: dict[str, str] = {}
    for pair in pairs:
        key, sep, value = pair.partition("=")
        if not sep:
            raise click.BadParameter(f"{pair!r} is not key=value", param_hint="--data")
        fields[key] = value
    client = NotifierClient(endpoint, secret)
    try:
        response = client.post_message(template_message(touser, template_id, fields, url))
    except requests.RequestException as exc:
        raise click.ClickException(f"cannot reach {endpoint}: {type(exc).__name__}") from None
    click.echo(f"HTTP {response.status_code} {response.text.strip()}")
    if response.status_code != 202:
        sys.exit(1)


def _register_commands() -> None:
    from notifier.cli import console, devcommands

    operator = (console.status, console.dead_letters, console.campaigns, console.quota)
    for command in (*operator, *devcommands.COMMANDS):
        main.add_command(command)


_register_commands()
