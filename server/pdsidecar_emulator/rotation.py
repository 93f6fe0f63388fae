"""Source tokens that rotate on a schedule, and the check a fake source API makes.

Pipedream refreshes a connected account's OAuth token before it expires: the
account says when (``next_refresh_at``) and until when the token works
(``expires_at``). A :class:`Schedule` gives an account that rhythm: each token
lives ``lifetime`` seconds and is replaced ``lead`` seconds before it expires,
so a new one appears every ``lifetime - lead`` seconds and the one it replaced
still works for ``lead`` seconds more (as with a real OAuth provider), then is
dead. With ``lead`` 0 only the current token works.

Rotation is lazy and exact: whenever the emulator reads an account (its routes,
the source API), every rotation due by then is applied, each stamped with the
time it was due. Nothing runs in the background, and a test clock works.

The source API (``GET /source/v1/users/me``, see source.py) accepts a bearer
token while :meth:`Rotations.accepts` says so: a rotated token until its
``expires_at``, or an account's current credential value (accounts without a
schedule) while the account's ``expires_at`` has not passed.
"""

from __future__ import annotations

import hmac
from collections import Counter, deque
from collections.abc import Callable, Iterable
from dataclasses import dataclass

from .models import Account, fake_token

AccountKey = tuple[str, str, str]  # project_id, environment, account id
LATE_KEPT = 20
TOKEN_FIELD = "oauth_access_token"


def key_of(account: Account) -> AccountKey:
    return (account.project_id, account.environment, account.id)


@dataclass
class Schedule:
    lifetime: float
    lead: float
    rotations: int = 0

    def __post_init__(self) -> None:
        if self.lifetime <= 0 or not 0 <= self.lead < self.lifetime:
            raise ValueError("lifetime must be positive and lead within [0, lifetime)")


class Rotations:
    """The schedules of one emulator, the tokens they issued, and the source API's counts."""

    def __init__(self, clock: Callable[[], float], retire: Callable[[Iterable[str]], None]) -> None:
        self._clock = clock
        self._retire = retire  # the emulator remembers every value ever held (log scans)
        self.schedules: dict[AccountKey, Schedule] = {}
        # token -> (account, expires_at): tokens a schedule issued, alive or recently dead.
        self._issued: dict[str, tuple[AccountKey, float]] = {}
        self.source_statuses: Counter[int] = Counter()
        # How long after its expiry each dead token was presented (the last few): a
        # holder a moment late and one that never heard of the rotation read alike as 401.
        self.late_by: deque[float] = deque(maxlen=LATE_KEPT)

    def start(self, account: Account, lifetime: float, lead: float) -> Account:
        """Put ``account`` on a schedule, with a new token from now."""
        if not account.credentials:
            raise ValueError(f"account {account.id} has no credentials to rotate")
        schedule = Schedule(lifetime, lead)
        self.schedules[key_of(account)] = schedule
        self._rotate(account, schedule, self._clock())
        return account

    def stop(self, account: Account) -> bool:
        return self.schedules.pop(key_of(account), None) is not None

    def advance(self, account: Account | None) -> None:
        """Apply every rotation of ``account`` due by now, each at the time it was due."""
        if account is None:
            return
        schedule = self.schedules.get(key_of(account))
        if schedule is None:
            return
        now = self._clock()
        while account.next_refresh_at is not None and account.next_refresh_at <= now:
            self._rotate(account, schedule, account.next_refresh_at)

    def _rotate(self, account: Account, schedule: Schedule, at: float) -> None:
        credentials = dict(account.credentials or {})
        name = TOKEN_FIELD if TOKEN_FIELD in credentials else next(iter(credentials))
        old = credentials.get(name)
        if isinstance(old, str):
            self._retire((old,))
        token = fake_token(account.app)
        credentials[name] = token
        account.credentials = credentials
        account.last_refreshed_at = account.updated_at = at
        account.expires_at = at + schedule.lifetime
        account.next_refresh_at = at + schedule.lifetime - schedule.lead
        self._issued[token] = (key_of(account), account.expires_at)
        schedule.rotations += 1
        self._forget_dead(at)

    def _forget_dead(self, now: float) -> None:
        if len(self._issued) > 4 * max(1, len(self.schedules)):
            self._issued = {t: v for t, v in self._issued.items() if v[1] > now}

    def accepts(self, token: str, accounts: Iterable[Account]) -> AccountKey | None:
        """The account whose live token ``token`` is, or None (the source answers 401)."""
        now = self._clock()
        issued = self._issued.get(token)
        if issued is not None:
            if now < issued[1]:
                return issued[0]
            self.late_by.append(round(now - issued[1], 3))
            return None
        wanted = token.encode()
        for account in accounts:
            if key_of(account) in self.schedules or not account.credentials:
                continue
            if account.expires_at is not None and now >= account.expires_at:
                continue
            for value in account.credentials.values():
                if isinstance(value, str) and hmac.compare_digest(value.encode(), wanted):
                    return key_of(account)
        return None

    def stats(self) -> dict[str, object]:
        return {
            "source": {str(status): n for status, n in self.source_statuses.items()},
            "rotations": {"/".join(k): s.rotations for k, s in self.schedules.items()},
            "late_by": list(self.late_by),
        }
