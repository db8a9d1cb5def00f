"""Test rigs: the parts wired to stand-ins and example data, for the tests, the benchmarks and trials.

    testing.alerts     the alerts service against the Twilio stand-in (running_alerts, write_config, warning,
                       start/subscribed for a child process)
    testing.collector  the collector on a bare deployment, readings to publish to it (make_config, running)
    testing.rules      builders for rule tests; the rules service running (Service) and its warnings (Warnings)
    testing.devices    a minimal deployment around some gateways (a site per device); the checks every device
                       kind's examples pass (check_examples, run_examples)
    testing.edge       simulated gauges and subscribers that keep what crossed the broker (Durable, Collected)
    testing.faults     a 4G link that can be cut (Link), three gateways streaming, a gateway watched (Watch)
    testing.payloads   hostile MQTT payloads (hypothesis strategies) for the codec's fuzz tests
    testing.waits      wait_for: poll for an event that has no hook, failing with what never happened
    testing.console    the example on private ports under the real `yujing run`, and headless Chromium to look
    testing.duty       the duty office beside the alerts rig, with an operator, a viewer and an admin
    testing.cap        a CAP signer's certificate and key, and XML-DSig signing
    testing.chain      the example chain's people by phone, as a drill's participants

Production code never imports this package (tests/test_floors.py checks it); it may import anything.
Test modules import helpers from here, never from one another.
"""
