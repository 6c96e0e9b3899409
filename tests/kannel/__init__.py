"""A real Kannel (bearerbox + smsbox + fakesmsc) for the kannel gateway tests."""
