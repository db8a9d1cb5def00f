#!/usr/bin/env bash
# The whole test suite: install the test servers and the package, then pytest.
# The tests start their own Mosquitto, InfluxDB 1.6.7 and VictoriaMetrics on free loopback ports.
set -uo pipefail
cd "$(dirname "$0")/.."
bash tests/install-servers.sh || exit 1
python3 -m pytest "$@"
rc=$?
if [ $rc -eq 5 ]; then
  echo "tests/run.sh: pytest collected no tests: failing on purpose" >&2
  exit 1
fi
exit $rc
