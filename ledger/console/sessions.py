"""Who is logged in to the console. Sessions are kept on the server (a PostgreSQL login's
password never leaves it); the browser holds only a signed, random session id in a cookie that
scripts cannot read (`HttpOnly`) and other sites cannot send (`SameSite=Strict`); every form
carries the session's CSRF token, and the login form a signed token of its own."""

from __future__ import annotations

import hmac
import secrets
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path

from itsdangerous import BadSignature, TimestampSigner

SESSION_COOKIE = "ansinh_session"
LOGIN_COOKIE = "ansinh_login"
IDLE_SECONDS = 30 * 60  # a session unused this long is closed
LOGIN_FORM_SECONDS = 10 * 60  # how long a login form may be sent after it was served


@dataclass
class Session:
    user: str  # the actor: the authenticated role on PostgreSQL, the desk's login otherwise
    kinds: frozenset[str]  # the ledger's roles the user has
    store: str  # the store as this user connects to it
    csrf: str = field(default_factory=lambda: secrets.token_urlsafe(32))
    seen: float = field(default_factory=time.monotonic)
    # settlement files checked and waiting to be applied, by a random id the page holds
    uploads: dict[str, Path] = field(default_factory=dict)


class Sessions:
    def __init__(self, secret: bytes, idle: float = IDLE_SECONDS) -> None:
        self._signer = TimestampSigner(secret, salt="ansinh console session")
        self._login = TimestampSigner(secret, salt="ansinh console login form")
        self._idle = idle
        self._open: dict[str, Session] = {}
        self._lock = threading.Lock()

    def open(self, session: Session) -> str:
        """A new session; the cookie's value that names it."""
        token = secrets.token_urlsafe(32)
        with self._lock:
            self._open[token] = session
        return self._signer.sign(token).decode("ascii")

    def find(self, cookie: str | None) -> Session | None:
        """The session a cookie names, if it is open and was used within the idle time."""
        if not cookie:
            return None
        try:
            token = self._signer.unsign(cookie).decode("ascii")
        except BadSignature:
            return None
        now = time.monotonic()
        with self._lock:
            session = self._open.get(token)
            if session is None or now - session.seen > self._idle:
                self._open.pop(token, None)
                return None
            session.seen = now
            return session

    def close(self, cookie: str | None) -> None:
        if not cookie:
            return
        try:
            token = self._signer.unsign(cookie).decode("ascii")
        except BadSignature:
            return
        with self._lock:
            self._open.pop(token, None)

    def login_form(self) -> tuple[str, str]:
        """(the login cookie's value, the form's token): sent together, they must match."""
        nonce = secrets.token_urlsafe(24)
        return nonce, self._login.sign(nonce).decode("ascii")

    def login_form_holds(self, cookie: str | None, token: str | None) -> bool:
        if not cookie or not token:
            return False
        try:
            signed = self._login.unsign(token, max_age=LOGIN_FORM_SECONDS).decode("ascii")
        except BadSignature:
            return False
        return hmac.compare_digest(signed, cookie)


def csrf_holds(session: Session, token: str | None) -> bool:
    return token is not None and hmac.compare_digest(session.csrf, token)


FAILURES_ALLOWED = 5  # failed logins of one user name in WINDOW
ADDRESS_FAILURES_ALLOWED = 30  # from one address (an office behind one address has many users)
FAILURE_WINDOW = 15 * 60
FAILURES_KEPT = 100_000  # names and addresses remembered at most (a flood forgets the oldest)


class LoginThrottle:
    """Failed logins counted by user name and by address (keys `user:…`, `address:…`): beyond
    their allowance in the window, that name (or address) is refused until its oldest failure
    leaves the window, whatever the password, so that passwords cannot be guessed at the
    console's speed. Someone can so keep a user out for a while by failing in their name: the
    price of not letting a name be guessed from many addresses."""

    def __init__(
        self,
        allowed: int = FAILURES_ALLOWED,
        window: float = FAILURE_WINDOW,
        address_allowed: int = ADDRESS_FAILURES_ALLOWED,
    ) -> None:
        self._failures: dict[str, list[float]] = {}
        self._allowed = allowed
        self._address_allowed = address_allowed
        self._window = window
        self._lock = threading.Lock()

    def _limit(self, key: str) -> int:
        return self._address_allowed if key.startswith("address:") else self._allowed

    def wait(self, *keys: str) -> int:
        """Seconds until these may try again (0: now)."""
        now = time.monotonic()
        longest = 0.0
        with self._lock:
            for key in keys:
                recent = [t for t in self._failures.get(key, []) if now - t < self._window]
                if len(recent) >= self._limit(key):
                    longest = max(longest, recent[0] + self._window - now)
        return int(longest) + (1 if longest else 0)

    def failed(self, *keys: str) -> None:
        now = time.monotonic()
        with self._lock:
            for key in keys:
                recent = [t for t in self._failures.pop(key, []) if now - t < self._window]
                self._failures[key] = [*recent, now][-self._limit(key) :]
            while len(self._failures) > FAILURES_KEPT:
                self._failures.pop(next(iter(self._failures)))

    def succeeded(self, *keys: str) -> None:
        with self._lock:
            for key in keys:
                self._failures.pop(key, None)
