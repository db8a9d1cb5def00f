#!/usr/bin/env bash
# The whole test suite: install the test servers and the package, then pytest.
# The tests start their own Mosquitto, InfluxDB 1.6.7 and VictoriaMetrics on free loopback ports.
#
# Two lanes run side by side: the tests marked `long` (minutes of real outage, mostly waiting) in the
# background, everything else in the foreground; the long lane's output is printed when both are done.
# YUJING_ONE_LANE=1 runs a single pytest instead (e.g. to pass your own -m).
set -uo pipefail
cd "$(dirname "$0")/.."
bash tests/install-servers.sh || exit 1

if [ "${YUJING_ONE_LANE:-}" = 1 ]; then
  python3 -m pytest "$@"
  rc=$?
  [ $rc -eq 5 ] && { echo "tests/run.sh: pytest collected no tests: failing on purpose" >&2; exit 1; }
  exit $rc
fi

log=$(mktemp /tmp/yujing-long-lane.XXXXXX)
# Disjoint port ranges (simulators/ports.py free_port), so the lanes never race for one.
YUJING_FREE_PORTS=27000-32767 python3 -m pytest -m "long and not soak" "$@" >"$log" 2>&1 &
long_pid=$!
YUJING_FREE_PORTS=20000-26999 python3 -m pytest -m "not long and not soak" "$@"
rc=$?
wait $long_pid
long_rc=$?
echo "---- long lane (tests marked long) ----"
cat "$log"
rm -f "$log"

# pytest's 5 means "no tests": fine in one lane (a file without long tests), never in both.
if [ $rc -eq 5 ] && [ $long_rc -eq 5 ]; then
  echo "tests/run.sh: pytest collected no tests: failing on purpose" >&2
  exit 1
fi
[ $rc -eq 5 ] && rc=0
[ $long_rc -eq 5 ] && long_rc=0
[ $rc -ne 0 ] && exit $rc
exit $long_rc
