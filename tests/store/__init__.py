"""Tests of notifier/store/."""
