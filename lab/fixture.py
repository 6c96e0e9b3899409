"""pytest plugin: a session-wide lab PBX.

Use with `pytest_plugins = ["lab.fixture"]` (test module or root conftest).
A lab that cannot start fails the tests that need it: it never skips, so a
broken lab cannot pass CI unnoticed.
"""

from collections.abc import Iterator

import pytest

from lab.pbx import LabPBX


def running(pbx: LabPBX) -> Iterator[LabPBX]:
    """`pbx` started, and stopped when the fixture that yields from this ends."""
    try:
        pbx.start()
        yield pbx
    finally:
        pbx.stop()


@pytest.fixture(scope="session")
def lab_pbx(tmp_path_factory: pytest.TempPathFactory) -> Iterator[LabPBX]:
    """A started LabPBX (Asterisk + SIPp actors), stopped after the session."""
    yield from running(LabPBX(tmp_path_factory.mktemp("lab-pbx")))
