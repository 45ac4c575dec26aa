"""Tests of notifier/worker/."""
