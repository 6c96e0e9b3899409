"""Dialplan files shipped with textback (read by `textback install`)."""
