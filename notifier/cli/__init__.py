"""The `notifier` command: signed test sends, secrets, operator commands, the dev tools' doors."""
