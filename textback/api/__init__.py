"""The JSON API under /api/v1: bearer tokens, reads of the inbox and scorecard, idempotent writes."""
