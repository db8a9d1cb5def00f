"""Value sources and device simulators: scripted values, a shared Modbus endpoint, per-device faults."""

from __future__ import annotations

from datetime import datetime, timedelta, timezone

import pytest
from servers import free_port

from edge.devices import make_reader
from edge.devices.modbus.config import ModbusTcpDevice
from edge.devices.reader import ReaderContext
from simulators.devices import Fault, simulate_devices
from simulators.devices.values import Constant, Manual, PiecewiseLinear, Ramp, TippingCounter
from yujing.clock import Clock
from yujing.errors import DeviceError

T0 = datetime(2026, 7, 14, tzinfo=timezone.utc)


def at(s: float) -> datetime:
    return T0 + timedelta(seconds=s)


def test_piecewise_linear_interpolates_and_holds_its_ends():
    src = PiecewiseLinear([(0, 10), (100, 20), (200, 0)], t0=T0)
    assert [src.value(at(s)) for s in (-5, 0, 50, 100, 150, 999)] == [10, 10, 15, 20, 10, 0]


def test_ramp_starts_where_it_is_first_asked():
    src = Ramp(5.0, 0.5)
    assert src.value(at(10)) == 5.0 and src.value(at(14)) == 7.0


def test_tipping_counter_integrates_rain_rate_into_whole_tips_rolls_over_and_resets():
    rate = Manual(36.0)  # mm/h = 0.01 mm/s
    ctr = TippingCounter(rate, mm_per_tip=0.5, rollover=100, start_tips=98)
    assert ctr.value(at(0)) == 49.0
    assert ctr.value(at(50)) == 49.5  # 0.5 mm fell: one tip
    assert ctr.tips(at(100)) == 0  # 98 + 2 tips wraps at 100
    rate.set(0)
    assert ctr.tips(at(1000)) == 0
    ctr.reset()
    rate.set(360)
    assert ctr.value(at(1010)) == pytest.approx(1.0)


async def test_one_endpoint_serves_many_slaves_and_a_fault_silences_only_its_device():
    port = free_port()
    devs = [ModbusTcpDevice.model_validate({"id": f"d{i}", "type": "modbus_tcp", "site": "S", "port": port,
                                            "slave": i, "timeout_s": 0.3, "retries": 0,
                                            "registers": [{"quantity": "v", "address": 0}]}) for i in range(1, 51)]
    clock = Clock()
    async with simulate_devices(devs, {d.id: {"v": Constant(d.slave * 10)} for d in devs}, clock) as sims:
        assert len({id(sims.sim(d.id)) for d in devs}) == 1
        await sims.fault(Fault.HANG, "d7")
        ctx = ReaderContext(clock)
        for d in devs[:10]:
            async with make_reader(d, ctx) as reader:
                if d.id == "d7":
                    with pytest.raises(DeviceError):
                        await reader.read()
                else:
                    assert [s.value for s in await reader.read()] == [d.slave * 10]
