"""Requests per token as a token bucket: how long a caller must wait, if at all. No I/O."""

from __future__ import annotations


class RateLimiter:
    def __init__(self, per_minute: int, burst: int):
        self._rate = per_minute / 60.0
        self._burst = float(burst)
        self._buckets: dict[object, tuple[float, float]] = {}  # key -> (tokens, at)

    def wait(self, key: object, now: float) -> float:
        """0 and one request counted, or the seconds until the next request is allowed."""
        tokens, at = self._buckets.get(key, (self._burst, now))
        tokens = min(self._burst, tokens + (now - at) * self._rate)
        if tokens < 1.0:
            self._buckets[key] = (tokens, now)
            return (1.0 - tokens) / self._rate
        self._buckets[key] = (tokens - 1.0, now)
        return 0.0
