"""Development tools, not shipped in the wheel: the dev stack, the bench and a fake WeChat."""
