"""The outbox's state machine as one table, in the manner of h11's `_state.py`: every transition
a row can take is here, and the store's SQL takes its states from it (`OUTBOX.target`,
`OUTBOX.guard`), so a second backend reads what to implement from one place.

    pending --claim--> sending --accepted--> sent
       ^                  |----end-------> failed | unknown | blocked
       +--retry / hold----+
    pending --expire / cancel--> expired / failed
    sending --interrupted (a crash)--> unknown
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Mapping


@dataclass(frozen=True)
class Transition:
    sources: tuple[str, ...]  # the states a row must be in for the transition to take it
    targets: tuple[str, ...]  # the state it ends in (more than one: the caller names it)


class Machine:
    """A table of named transitions; SQL fragments for them, with literal states (a partial
    index on a literal state still serves the query)."""

    def __init__(self, transitions: Mapping[str, Transition]):
        self.transitions = dict(transitions)

    def target(self, event: str, state: str | None = None) -> str:
        """The state `event` ends in; `state` names it when the transition has several."""
        targets = self.transitions[event].targets
        if state is None:
            if len(targets) != 1:
                raise ValueError(f"{event} ends in one of {targets}: name it")
            return targets[0]
        if state not in targets:
            raise ValueError(f"{event} cannot end in {state!r} (only {', '.join(targets)})")
        return state

    def guard(self, event: str, column: str = "state") -> str:
        """`state = 'x'` (or `state IN (...)`) for the states `event` may start from."""
        sources = self.transitions[event].sources
        if len(sources) == 1:
            return f"{column} = '{sources[0]}'"
        return f"{column} IN ({', '.join(repr(s) for s in sources)})"


OUTBOX = Machine({
    "claim": Transition(("pending",), ("sending",)),
    "accepted": Transition(("sending",), ("sent",)),
    "retry": Transition(("sending",), ("pending",)),
    "hold": Transition(("sending",), ("pending",)),  # quiet hours: due again when they end
    "end": Transition(("sending",), ("failed", "unknown", "blocked")),
    "expire": Transition(("pending",), ("expired",)),
    "cancel": Transition(("pending",), ("failed",)),  # a self-test's text after its run
    "interrupted": Transition(("sending",), ("unknown",)),  # found at start-up: never re-sent
})
