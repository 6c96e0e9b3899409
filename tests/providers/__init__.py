"""Loopback servers that follow each SMS provider's documented contract, for the gateway tests."""
