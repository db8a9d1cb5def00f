"""Line protocol for readings: escaping, non-finite values, and the per-series cache giving the same lines."""

from __future__ import annotations

from datetime import datetime, timezone

import yujing.config  # noqa: F401  first: collector.config is imported through it
from collector.stores.lineproto import line, lines
from yujing.model import Quality, Reading

T = datetime(2026, 7, 14, 19, 5, 0, 123456, tzinfo=timezone.utc)
NS = 1784055900123456000


def reading(**kw) -> Reading:
    base = dict(id="r-1", site="S 1,a=b", sensor="rg", quantity="rain_mm", value=1.5, unit="mm", ts=T, gateway="gw")
    return Reading(**{**base, **kw})


def test_tags_are_escaped_and_fields_quoted():
    r = reading(id='say "hi"\\', unit='m"')
    assert line(r) == (r'rain_mm,site=S\ 1\,a\=b,sensor=rg,gateway=gw,quality=ok,drill=false '
                       rf'value=1.5,id="say \"hi\"\\",unit="m\"" {NS}')


def test_a_non_finite_value_is_left_out_and_the_quality_kept():
    r = reading(value=float("nan"), quality=Quality.COMM_ERROR, gateway="")
    assert line(r) == f'rain_mm,site=S\\ 1\\,a\\=b,sensor=rg,quality=comm-error,drill=false id="r-1",unit="mm" {NS}'


def test_readings_of_one_series_share_its_tags_but_not_their_values():
    a, b = reading(id="a", site="S1", value=1.0), reading(id="b", site="S1", value=2.0, drill=True)
    c = reading(id="c", site="S1", value=3.0)
    out = lines([a, b, c]).split("\n")
    assert out[0].split(" ")[0] == out[2].split(" ")[0] != out[1].split(" ")[0]
    assert [o.split(" ")[1] for o in out] == ['value=1.0,id="a",unit="mm"', 'value=2.0,id="b",unit="mm"',
                                             'value=3.0,id="c",unit="mm"']
    assert "drill=true" in out[1]
