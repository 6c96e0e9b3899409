#!/usr/bin/env bash
# `make test`: the whole suite as two pytest runs at once, on the machine's two cores.
#
# The lab half (tests marked `lab`: the lab PBX, SIPp, the booted Debian root) runs in a
# private network and mount namespace: its own loopback and its own /run, where the lab PBX
# takes its lock. The other half (unit, contract, browser and database tests) runs in the
# host's namespaces, where it has the network `pipx install` needs. The two share no port
# and no lock, so neither waits for the other; each writes its own log and temporary
# directory. The exit status fails if either half fails or runs no test (pytest's 5).
# Arguments go to both pytest runs.
set -uo pipefail
cd "$(dirname "$0")/.."
PY=${PY:-.venv/bin/python}
work=${TEXTBACK_TEST_DIR:-/tmp/textback-tests}
rm -rf "$work" && mkdir -p "$work"

started=$(date +%s)
unshare --net --mount --propagation private -- bash -c '
    mount -t tmpfs tmpfs /run && ip link set lo up || exit 3
    exec "$@"' bash "$PY" -m pytest -p no:cacheprovider -m lab --basetemp="$work/lab" "$@" \
    >"$work/lab.log" 2>&1 &
lab=$!
"$PY" -m pytest -p no:cacheprovider -m "not lab" --basetemp="$work/other" "$@" \
    >"$work/other.log" 2>&1 &
other=$!
wait "$other"; other_rc=$?
wait "$lab"; lab_rc=$?

for half in other lab; do
    echo "================ the ${half} half: $work/$half.log ================"
    cat "$work/$half.log"
done
echo "================ make test: $(( $(date +%s) - started )) s in all ================"
echo "lab half (exit $lab_rc):   $(tail -n 1 "$work/lab.log")"
echo "other half (exit $other_rc): $(tail -n 1 "$work/other.log")"
grep -h '^\(FAILED\|ERROR\) ' "$work/other.log" "$work/lab.log" || true
(( lab_rc == 0 && other_rc == 0 ))
