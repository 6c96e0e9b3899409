"""The pure core: values in, decisions out.

Nothing here does I/O or reads a clock: every module takes the facts (and the
time) as arguments and returns what to do. The edges (AMI, the store, the
gateways, SMTP, the web) carry those decisions out. `tests/test_layout.py`
holds this folder to that with import-linter.
"""
