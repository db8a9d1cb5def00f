"""The login throttle: after ``failures`` failed logins for one user name or from one address within
``window_s``, every login for it is refused (429) until the oldest of them is older than the window.

    throttle = LoginThrottle(accounts=["chief"], max_keys=10_000)
    if throttle.blocked(user, remote): ...            # 429, without checking the password
    throttle.failed(user, remote)                     # after a wrong password

Bounded whatever an unauthenticated caller sends: each key keeps at most ``failures`` times, a key is dropped
once its newest failure is past the window, and the keys nobody configured (unknown user names, addresses) are
at most ``max_keys`` — past that the one whose last failure is oldest goes first, counted. The accounts' own
names are never evicted (there are only as many as the configuration has), so a flood of made-up names from
many addresses cannot reset the count of guesses at a real account's password.
"""

from __future__ import annotations

import time
from collections import OrderedDict, deque
from collections.abc import Callable, Iterable

from prometheus_client import Counter, Gauge

KEYS = Gauge("yujing_duty_login_throttle_keys", "User names and addresses with recent failed logins, tracked")
EVICTED = Counter("yujing_duty_login_throttle_evicted_total",
                  "Tracked failed-login keys (unknown user names, addresses) dropped at the size cap before expiring")


class LoginThrottle:
    def __init__(self, accounts: Iterable[str], *, failures: int = 5, window_s: float = 300.0,
                 max_keys: int = 10_000, clock: Callable[[], float] = time.monotonic) -> None:
        self.failures, self.window_s, self.max_keys, self.clock = failures, window_s, max_keys, clock
        self._accounts = frozenset(accounts)
        self._mine: dict[str, deque[float]] = {}  # configured user names: bounded by the configuration
        self._others: OrderedDict[str, deque[float]] = OrderedDict()  # oldest last failure first

    def __len__(self) -> int:
        return len(self._mine) + len(self._others)

    def blocked(self, user: str, remote: str) -> bool:
        now = self.clock()
        self._expire(now)
        return any(len(t) >= self.failures and now - t[0] < self.window_s
                   for k in self._keys(user, remote) if (t := self._table(k).get(k)) is not None)

    def failed(self, user: str, remote: str) -> None:
        now = self.clock()
        for k in self._keys(user, remote):
            table = self._table(k)
            times = table.setdefault(k, deque(maxlen=self.failures))  # only the last few say whether to refuse
            times.append(now)
            if table is self._others:
                self._others.move_to_end(k)
        while len(self._others) > self.max_keys:
            self._others.popitem(last=False)
            EVICTED.inc()
        KEYS.set(len(self))

    def _keys(self, user: str, remote: str) -> tuple[str, str]:
        return f"user:{user}", f"addr:{remote}"

    def _table(self, key: str) -> dict[str, deque[float]]:
        return self._mine if key.startswith("user:") and key[5:] in self._accounts else self._others

    def _expire(self, now: float) -> None:
        # ordered by last failure: only the front can have expired, so this costs the keys it drops
        while self._others and now - next(iter(self._others.values()))[-1] >= self.window_s:
            self._others.popitem(last=False)
        for k in [k for k, t in self._mine.items() if now - t[-1] >= self.window_s]:
            del self._mine[k]
        KEYS.set(len(self))
