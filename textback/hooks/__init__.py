"""Outbound webhooks: events committed with the change that caused them, delivered signed."""
