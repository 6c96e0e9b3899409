"""The daemon's workers, each in its own module; the Daemon composes them."""
