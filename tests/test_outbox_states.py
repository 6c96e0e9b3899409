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
