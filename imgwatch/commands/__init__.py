"""Operator commands; each is `run(settings, args) -> int`."""
