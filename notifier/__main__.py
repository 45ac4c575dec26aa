"""`python -m notifier` runs the same command as `notifier`."""

from notifier.cli.main import main

main()
