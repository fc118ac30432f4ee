"""Browser sessions: random tokens in an HttpOnly cookie, idle expiry, a CSRF token each.

Sessions live in memory (a demo app); :class:`Sessions` may outlive a web app restart
(the same object passed to a new app keeps everyone logged in).
"""

from __future__ import annotations

import secrets
import time
from collections.abc import Callable
from dataclasses import dataclass, field

__all__ = ["Session", "Sessions", "COOKIE"]

COOKIE = "vcdash_session"


@dataclass
class Session:
    token: str
    user: str
    csrf: str
    created: float  #: monotonic s
    expires: float  #: monotonic s (idle expiry, moved on each use)
    cache: dict = field(default_factory=dict)  # scope cache: key -> (monotonic s, value)

    def remaining_s(self, now: float) -> float:
        return max(0.0, self.expires - now)


class Sessions:
    """Session store with idle expiry ``ttl_s`` (seconds) and at most ``max_sessions``."""

    def __init__(self, ttl_s: float = 1800.0, *, max_sessions: int = 10_000,
                 clock: Callable[[], float] = time.monotonic) -> None:
        if not 1.0 <= ttl_s <= 86_400:
            raise ValueError(f"ttl_s must be in 1..86400 s, got {ttl_s!r}")
        self.ttl_s = float(ttl_s)
        self.max_sessions = max_sessions
        self._clock = clock
        self._by_token: dict[str, Session] = {}

    def create(self, user: str) -> Session:
        now = self._clock()
        self._sweep(now)
        if len(self._by_token) >= self.max_sessions:  # drop the one closest to expiry
            oldest = min(self._by_token.values(), key=lambda s: s.expires)
            del self._by_token[oldest.token]
        s = Session(secrets.token_urlsafe(32), user, secrets.token_urlsafe(16), now,
                    now + self.ttl_s)
        self._by_token[s.token] = s
        return s

    def get(self, token: str | None, *, touch: bool = True) -> Session | None:
        """The live session of ``token`` (None if unknown or expired); ``touch`` extends it."""
        if not token:
            return None
        s = self._by_token.get(token)
        now = self._clock()
        if s is None or s.expires <= now:
            self._by_token.pop(token, None)
            return None
        if touch:
            s.expires = now + self.ttl_s
        return s

    def remaining_s(self, s: Session) -> float:
        return s.remaining_s(self._clock())

    def revoke(self, token: str) -> None:
        self._by_token.pop(token, None)

    def _sweep(self, now: float) -> None:
        for t in [t for t, s in self._by_token.items() if s.expires <= now]:
            del self._by_token[t]
