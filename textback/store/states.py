"""Each claim's state machine as one table, in the manner of h11's `_state.py`: every transition
a row can take is here, and the store's SQL on both backends takes its states from it
(`OUTBOX.target`, `OUTBOX.guard`): the outbox, owner mail (alerts and notices), event
deliveries (webhooks and CRM adapters), self-test runs, media fetches and Web Push messages.

A claim moves a row out of its waiting state in one conditional UPDATE (`Connection._claim`,
for every machine), so only one worker, of one daemon or of several, ever holds it; on
PostgreSQL the rows a claim reads are locked and rows another daemon holds are skipped
(`FOR UPDATE SKIP LOCKED`).

A claim also records its daemon (`claimed_by`, textback/store/claimers.py). The `interrupted`
transitions (and the self-test's `abandon`) take a row only once that daemon is gone: a daemon
that starts, or a fleet's sweep, never takes a row another live daemon is working on.

The outbox:

    pending --claim--> sending --accepted--> sent
       ^                  |----end-------> failed | unknown | blocked
       +--retry / hold----+
    pending --expire / cancel--> expired / failed
    sending --interrupted (its daemon gone: a crash, a kill)--> unknown
    unknown --accepted / end (the send that outlived its claim ends)--> sent | failed | blocked

Every outbox transition is one UPDATE guarded by its source states (`Connection._transition`),
so a refused one (logged) leaves the row as another path left it. A send can outlive its claim:
its row is marked `unknown` when it outruns the bound `OutboxWorker.sends_stopped` waits as
its AMI lease goes, or by a fleet's recovery while its daemon's database link was cut. What
the gateway then says still settles the row (sent, or failed: neither sends it again, and the
consent ledger and the owner hear what happened), but such a row never goes back to `pending`
(retry, hold): a row once `unknown` is never sent again.

A row `interrupted` owes its owner a notice (`notice_owed`, beside the state, not a state of
its own: the row is `unknown` either way) until the notice is queued or the late send ends it.
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
    # unknown: a send that outlived its claim ended (see above); it was sent, or it was not.
    "accepted": Transition(("sending", "unknown"), ("sent",)),
    "retry": Transition(("sending",), ("pending",)),
    "hold": Transition(("sending",), ("pending",)),  # quiet hours: due again when they end
    "end": Transition(("sending", "unknown"), ("failed", "unknown", "blocked")),
    "expire": Transition(("pending",), ("expired",)),
    "cancel": Transition(("pending",), ("failed",)),  # a self-test's text after its run
    "interrupted": Transition(("sending",), ("unknown",)),  # found at start-up: never re-sent
})


# Alerts and notices to owners: pending --claim--> sending --> sent | failed, or pending again
# (retry); a stop while mailing leaves it to be mailed again.
MAIL = Machine({
    "claim": Transition(("pending",), ("sending",)),
    "retry": Transition(("sending",), ("pending",)),
    # skipped: an alert whose owner chose no alert emails (alerts only: the notices' CHECK
    # refuses it), kept so the thread says why no email went.
    "end": Transition(("sending",), ("sent", "failed", "skipped")),
    "interrupted": Transition(("sending",), ("pending",)),
})

# Events to a webhook endpoint or a CRM adapter: each try is claimed; a delivery too old expires.
DELIVERY = Machine({
    "claim": Transition(("pending",), ("sending",)),
    "end": Transition(("sending",), ("delivered", "pending")),  # pending: tried again later
    "expire": Transition(("pending",), ("expired",)),
    "interrupted": Transition(("sending",), ("pending",)),
})

# Self-test runs: the oldest requested run is claimed; a stop mid-run ends it as failed.
SELFTEST = Machine({
    "claim": Transition(("requested",), ("running",)),
    "finish": Transition(("running", "requested"), ("done",)),  # the run's own id: no guard
    "abandon": Transition(("running",), ("done",)),
})

# Media a homeowner sent: fetched once claimed; a fetch has no side effect, so a stop mid-fetch
# puts the row back.
MEDIA = Machine({
    "claim": Transition(("pending",), ("fetching",)),
    "keep": Transition(("fetching",), ("kept",)),
    "retry": Transition(("fetching",), ("pending",)),
    "fail": Transition(("pending", "fetching"), ("failed",)),
    "interrupted": Transition(("fetching",), ("pending",)),
})

# Web Push messages to an owner's browsers: sent once claimed; a stop mid-send sends again.
PUSH = Machine({
    "claim": Transition(("pending",), ("sending",)),
    "retry": Transition(("sending",), ("pending",)),
    "end": Transition(("sending",), ("sent", "failed", "expired")),
    "interrupted": Transition(("sending",), ("pending",)),
})
