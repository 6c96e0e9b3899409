"""The daemon's own HTTP server: the shared inbox, and the routes other rooms add to it."""
