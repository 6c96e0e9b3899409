"""Calls rebuilt from CDR rows the lab's Asterisk wrote (tests/cdr/, by lab/record_cdr.py).

Each file in tests/cdr/ is the same call flow as the AMI trace of the same
name in tests/traces/, so a call recovered from the CDR must get the
outcome the tracker gives it live.
"""

from __future__ import annotations

import pytest
from hypothesis import given, settings, strategies as st

from tests.cdr_rows import CDR_DIR, load_fields
from tests.test_tracker import EXPECTED
from textback.core.recovery import CdrRecord, CsvLayout, from_csv_fields, recover_calls

LAYOUT = CsvLayout()  # the lab's cdr.conf: loguniqueid, loguserfield, newcdrcolumns
# Where the CSV CDR cannot know the DID: its dst is where the caller's channel ended up.
DID_IN_CDR = {"ivr_abandoned": "s", "blind_transfer": "202"}
# A caller with no number: AMI shows <unknown>, the CDR an empty src. Neither is texted.
CALLER_IN_CDR = {"<unknown>": ""}


def cdr_names() -> list[str]:
    return sorted(path.stem for path in CDR_DIR.glob("*.csv"))


def load_records(name: str, layout: CsvLayout = LAYOUT) -> list[CdrRecord]:
    return [from_csv_fields(fields, layout, None) for fields in load_fields(name)]


def recovered(records: list[CdrRecord], since: float = 0.0) -> list[tuple[str, str, str, str]]:
    return [(c.caller_id, c.did, c.outcome, c.reason)
            for c in recover_calls(records, ["carrier"], [], since)]


def test_every_recorded_cdr_has_a_trace_with_an_expectation():
    assert cdr_names() and set(cdr_names()) <= set(EXPECTED)


@pytest.mark.parametrize("name", cdr_names())
def test_a_call_recovered_from_the_cdr_gets_the_outcome_the_tracker_gives_it(name):
    expected = [(CALLER_IN_CDR.get(caller, caller), DID_IN_CDR.get(name, did), outcome, reason)
                for caller, did, outcome, reason in EXPECTED[name]]
    assert sorted(recovered(load_records(name))) == sorted(expected)


def test_the_call_id_is_the_linkedid_the_tracker_uses():
    [call] = recover_calls(load_records("freepbx_queue_answered"), ["carrier"], [], 0.0)
    [first] = [r for r in load_records("freepbx_queue_answered") if r.channel.startswith("PJSIP/carrier")]
    assert call.call_id == first.uniqueid == first.linkedid
    assert call.answered_by.startswith("PJSIP/office1-")


def test_times_come_from_the_rows():
    records = load_records("noanswer")
    [call] = recover_calls(records, ["carrier"], [], 0.0)
    assert (call.started_at, call.ended_at) == (records[0].start, records[0].end)
    assert call.ended_at - call.started_at == pytest.approx(6, abs=1)


def test_only_calls_that_ended_after_the_moment_are_recovered():
    records = load_records("two_callers_at_once")
    ends = sorted(c.ended_at for c in recover_calls(records, ["carrier"], [], 0.0))
    assert recovered(records, since=ends[-1]) == []
    assert len(recovered(records, since=ends[0] - 1)) == 2


def test_an_inbound_context_marks_a_call_inbound_too():
    records = load_records("noanswer")
    assert [c.outcome for c in recover_calls(records, ["other-trunk"], ["from-carrier"], 0.0)] == ["missed"]
    assert recover_calls(records, ["other-trunk"], [], 0.0) == []


def test_without_linkedid_the_legs_the_caller_dialled_are_grouped_by_uniqueid():
    without = CsvLayout(newcdrcolumns=False)
    for name in ("ringgroup", "voicemail", "busy"):
        records = [from_csv_fields(fields[:-3], without, None) for fields in load_fields(name)]
        assert recovered(records) == recovered(load_records(name))


def test_a_row_in_another_layout_is_refused():
    fields = load_fields("noanswer")[0]
    with pytest.raises(ValueError, match="18 columns"):
        from_csv_fields(fields[:-3], LAYOUT, None)


ALL_RECORDS = [record for name in cdr_names() for record in load_records(name)]


@settings(max_examples=200, deadline=None)
@given(st.permutations(ALL_RECORDS))
def test_the_calls_do_not_depend_on_the_order_of_the_rows(shuffled):
    assert sorted(recovered(shuffled)) == sorted(recovered(ALL_RECORDS))


@settings(max_examples=200, deadline=None)
@given(st.lists(st.sampled_from(cdr_names()), min_size=1, max_size=6, unique=True))
def test_flows_in_one_file_are_recovered_as_if_alone(names):
    together = [record for name in names for record in load_records(name)]
    alone = [call for name in names for call in recovered(load_records(name))]
    assert sorted(recovered(together)) == sorted(alone)


def ast_escape_quoted(name: str) -> str:
    """Asterisk's ast_escape_quoted (main/utils.c), the model of what a CDR's clid holds."""
    def allowed(ch: str) -> bool:
        return ch in "\t\v !" or "#" <= ch <= "[" or "]" <= ch <= "~" or ord(ch) > 0x7f

    return "".join(ch if allowed(ch) else "\\" + ch for ch in name)


@given(st.text(st.characters(blacklist_characters="\x00\r\n"), max_size=40).map(str.strip))
def test_the_clid_name_is_unquoted_as_asterisk_quoted_it(name):
    from textback.core.recovery import _split_clid

    assert _split_clid(f'"{ast_escape_quoted(name)}" <+12125550123>') == (name, "+12125550123")
