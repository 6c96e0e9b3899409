"""The outbox's transition table: what each transition starts from and ends in."""

import pytest

from textback.store.states import OUTBOX


def test_each_transition_names_its_states_as_the_sql_needs_them():
    assert OUTBOX.target("claim") == "sending" and OUTBOX.guard("claim") == "state = 'pending'"
    assert OUTBOX.target("expire") == "expired" and OUTBOX.guard("expire") == "state = 'pending'"
    assert OUTBOX.guard("hold") == "state = 'sending'" and OUTBOX.target("hold") == "pending"
    assert OUTBOX.target("end", "unknown") == "unknown"


def test_an_end_the_table_does_not_allow_is_refused():
    with pytest.raises(ValueError, match="cannot end in 'sent'"):
        OUTBOX.target("end", "sent")
    with pytest.raises(ValueError, match="name it"):
        OUTBOX.target("end")


def test_no_transition_takes_a_row_marked_unknown_back_to_pending():
    back_to_pending = [event for event, transition in OUTBOX.transitions.items()
                       if "pending" in transition.targets]
    assert sorted(back_to_pending) == ["hold", "retry"]
    assert all(OUTBOX.guard(event) == "state = 'sending'" for event in back_to_pending)
    # A send that outlived its claim still settles its row: it went, or it did not.
    assert OUTBOX.guard("accepted") == "state IN ('sending', 'unknown')"
    assert OUTBOX.guard("end") == "state IN ('sending', 'unknown')"
