"""Operator accounts: argon2 password hashes and API tokens, checked in constant time.

    python3 -m duty.accounts hash          # prompts for a password, prints its argon2id hash for the YAML

argon2-cffi (the reference argon2 binding, RFC 9106 defaults) hashes and verifies; an unknown user costs
the same verification as a known one, so response times do not tell which user names exist.
"""

from __future__ import annotations

import getpass
import hashlib
import hmac
import logging
import sys

from argon2 import PasswordHasher
from argon2.exceptions import InvalidHashError, VerificationError

from duty.config import Account, DutyConfig

log = logging.getLogger("yujing.duty")
_hasher = PasswordHasher()
_DUMMY = _hasher.hash("not a password of anyone")


class Accounts:
    def __init__(self, cfg: DutyConfig) -> None:
        self.by_user = {a.user: a for a in cfg.accounts}
        self._hashes: dict[str, str] = {}
        self._tokens: list[tuple[bytes, Account]] = []
        for a in cfg.accounts:
            if a.password_hash is not None:
                try:
                    self._hashes[a.user] = (a.password_hash if isinstance(a.password_hash, str)
                                            else a.password_hash.get())
                except LookupError as exc:
                    log.error("account cannot log in by password", extra={"kv": {"user": a.user, "reason": str(exc)}})
            if a.token is not None:
                try:  # kept as a digest: the comparison never touches the token itself
                    self._tokens.append((hashlib.sha256(a.token.get().encode()).digest(), a))
                except LookupError as exc:
                    log.error("account cannot log in by token", extra={"kv": {"user": a.user, "reason": str(exc)}})

    def check_password(self, user: str, password: str) -> Account | None:
        stored = self._hashes.get(user)
        try:
            _hasher.verify(stored or _DUMMY, password)
        except (VerificationError, InvalidHashError):
            return None
        return self.by_user[user] if stored is not None else None

    def check_token(self, token: str) -> Account | None:
        digest = hashlib.sha256(token.encode()).digest()
        found = None
        for stored, account in self._tokens:  # every one compared: no early exit to time
            if hmac.compare_digest(stored, digest):
                found = account
        return found


def hash_password(password: str) -> str:
    return _hasher.hash(password)


def main(argv: list[str] | None = None) -> int:
    args = sys.argv[1:] if argv is None else argv
    if args != ["hash"]:
        print("usage: python3 -m duty.accounts hash", file=sys.stderr)
        return 2
    pw = getpass.getpass("password: ") if sys.stdin.isatty() else sys.stdin.readline().rstrip("\n")
    print(hash_password(pw))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
