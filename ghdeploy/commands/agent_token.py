"""The agent's registry login: one ECR token, kept and renewed well before it expires."""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import TYPE_CHECKING

from ghdeploy import registry

if TYPE_CHECKING:
    from ghdeploy.registry import RegistryAuth

# ECR tokens live 12 h: take a new one an hour before the old one ends (or after 6 h when the
# expiry is unknown), so a poll never runs with a token that dies half-way through a pull.
TOKEN_REFRESH_BEFORE = 3600.0
TOKEN_MAX_AGE = 6 * 3600.0


class TokenSource:
    """The registry login, kept and renewed well before ECR's 12 h expiry."""

    def __init__(
        self,
        region: str,
        registry_host: str,
        login: Callable[[str, str], RegistryAuth] | None = None,
        now: Callable[[], float] = time.time,
    ) -> None:
        self.region = region
        self.registry = registry_host
        self._login = login or registry.get_login
        self._now = now
        self._auth: RegistryAuth | None = None
        self._fetched = 0.0

    def _stale(self, now: float) -> bool:
        if self._auth is None:
            return True
        if self._auth.expires_at is not None:
            return self._auth.expires_at - now < TOKEN_REFRESH_BEFORE
        return now - self._fetched > TOKEN_MAX_AGE

    def get(self) -> RegistryAuth:
        now = self._now()
        if self._stale(now):
            self._auth = self._login(self.region, self.registry)
            self._fetched = now
        assert self._auth is not None
        return self._auth

    def invalidate(self) -> None:
        """Forget the token (the registry refused it, or could not be asked): log in again next time."""
        self._auth = None
