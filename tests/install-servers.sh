#!/usr/bin/env bash
# Install what the test suite needs on a Debian machine (run as root): the servers the
# tests start themselves (Mosquitto, InfluxDB 1.6.7, VictoriaMetrics), Chromium for
# the drill-report screenshot and the console's browser tests (Debian's chromium-driver, driven by
# Selenium: no browser download), promtool (Debian's prometheus package) for the alerting rules and
# the parts' /metrics, and the Python package with its test extras.
set -euo pipefail
cd "$(dirname "$0")/.."
need=()
for bin in mosquitto:mosquitto mosquitto_pub:mosquitto-clients influxd:influxdb victoria-metrics:victoria-metrics chromium:chromium \
    chromedriver:chromium-driver promtool:prometheus; do
  command -v "${bin%%:*}" >/dev/null 2>&1 || need+=("${bin##*:}")
done
# the console's browser tests: a CJK font, so screenshots show the Chinese (not boxes)
fc-list 2>/dev/null | grep -q "Noto Sans CJK" || need+=(fonts-noto-cjk)
if [ ${#need[@]} -gt 0 ]; then
  export DEBIAN_FRONTEND=noninteractive
  apt-get update -q
  apt-get install -y -q --no-install-recommends "${need[@]}"
fi
# The Debian packages may start system instances on the default ports; the tests start their own.
# (prometheus: only its promtool is used; its server would scrape and listen on 9090 for nothing)
for svc in mosquitto influxdb victoria-metrics prometheus; do
  (command -v systemctl >/dev/null && systemctl stop "$svc" 2>/dev/null) || service "$svc" stop >/dev/null 2>&1 || true
done
python3 -m pip install -q -e '.[test]'
