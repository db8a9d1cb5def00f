"""Test rigs: the parts wired to stand-ins and example data, for the tests, the benchmarks and trials.

    testing.alerts    the alerts service against the Twilio stand-in (running_alerts, write_config)
    testing.rules     small builders for rule tests: a deployment with given sites, readings at given times
    testing.devices   a minimal deployment around some gateways (a site per device)

Production code never imports this package (tests/test_floors.py checks it); it may import anything.
"""
