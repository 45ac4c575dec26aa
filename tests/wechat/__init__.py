"""Tests of notifier/wechat/."""
