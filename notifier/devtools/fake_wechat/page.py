"""A small status page, so a developer can see in a browser what the fake has received."""

import json
from collections.abc import Mapping, Sequence
from html import escape
from typing import Any

_HEAD = (
    "<!doctype html><html><head><meta charset='utf-8'><title>Fake WeChat</title>"
    "<style>body{font-family:sans-serif}td,th{border:1px solid #ccc;padding:2px 6px;"
    "vertical-align:top}table{border-collapse:collapse}</style></head><body>"
)
_COLUMNS = ("msgid", "touser", "template_id", "data", "url", "miniprogram", "client_msg_id")


def _cell(value: Any) -> str:
    text = value if isinstance(value, str) else json.dumps(value, ensure_ascii=False)
    return f"<td>{escape(text)}</td>"


def render_page(stats: Mapping[str, Any], recent: Sequence[Mapping[str, Any]]) -> str:
    """Render counters and recent deliveries as HTML, escaping everything shown."""
    counters = "".join(
        f"<tr><th>{escape(name)}</th>{_cell(value)}</tr>" for name, value in stats.items()
    )
    header = "".join(f"<th>{name}</th>" for name in _COLUMNS)
    rows = "".join(
        "<tr>" + "".join(_cell(message.get(name)) for name in _COLUMNS) + "</tr>"
        for message in recent
    )
    return (
        f"{_HEAD}<h1>Fake WeChat</h1><h2>Counters</h2><table>{counters}</table>"
        f"<h2>Last {len(recent)} delivered messages, newest first</h2>"
        f"<table><tr>{header}</tr>{rows}</table></body></html>"
    )
