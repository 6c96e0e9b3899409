"""How hard the property tests try: bounded for `make test`, larger for `make fuzz`."""

from __future__ import annotations

import os

# `make fuzz` sets this; each property test's example count is multiplied by it.
FACTOR = max(1, int(os.environ.get("TEXTBACK_FUZZ_FACTOR", "1")))


def examples(count: int) -> int:
    return count * FACTOR
