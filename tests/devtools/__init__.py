"""Tests of notifier/devtools/."""
