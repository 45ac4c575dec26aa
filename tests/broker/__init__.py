"""Tests of notifier/broker/."""
