"""The form the twilio client's requests carry is encoded by alerts/provider.py (each value quoted once per
process: a red's SMS share one body); it must be byte for byte what urllib's ``urlencode(doseq=True)`` gives,
which is what aiohttp sent before."""

from __future__ import annotations

from urllib.parse import urlencode

from hypothesis import given
from hypothesis import strategies as st

from alerts.provider import form_encoded

text = st.text(alphabet=st.characters(blacklist_categories=("Cs",)), max_size=40)
value = st.one_of(text, st.integers(), st.booleans(), st.lists(text, max_size=3))


@given(st.dictionaries(text, value, max_size=6))
def test_the_form_is_what_urlencode_gives(data: dict):
    assert form_encoded(data) == urlencode(data, doseq=True)


def test_an_sms_and_a_call_encode_as_urlencode_does():
    sms = {"To": "+8613700000001", "From": "+8610123400000", "Body": "石堡乡共和村滑坡红色预警：请立即撤离。a+b&c=d %",
           "StatusCallback": "http://127.0.0.1:8089/twilio/status?n=0123456789abcdef0123&k=real"}
    call = {"To": "+8613700000001", "Twiml": "<Response><Gather numDigits=\"1\"><Say>收到请按1确认</Say></Gather></Response>",
            "StatusCallbackEvent": ["completed"]}
    for data in (sms, call, sms):  # the second time from what was remembered
        assert form_encoded(data) == urlencode(data, doseq=True)
