"""The `notifier` command itself: what it says when the dev tools are not installed."""
