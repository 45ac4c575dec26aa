"""Tests of notifier/web/."""
