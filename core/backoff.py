"""Exponential backoff with a cap and jitter, for retry loops.

    retry = Backoff(first=0.5, cap=15.0)
    while True:
        try:
            do_it()
            retry.reset()
            break
        except TransientError:
            time.sleep(retry.next())

Delays are ``first``, ``first * factor``, ... up to ``cap``; with ``jitter`` (a share,
e.g. 0.2) each delay is spread evenly over ``[d * (1 - jitter), d * (1 + jitter)]`` so
many clients retrying at once do not arrive in step. ``reset()`` after a success starts
again at ``first``.
"""

from __future__ import annotations

import random


class Backoff:
    def __init__(
        self,
        first: float,
        cap: float,
        *,
        factor: float = 2.0,
        jitter: float = 0.0,
        rng: random.Random | None = None,
    ) -> None:
        if first <= 0 or cap < first or factor < 1 or not 0 <= jitter < 1:
            raise ValueError("need 0 < first <= cap, factor >= 1 and 0 <= jitter < 1")
        self.first = first
        self.cap = cap
        self.factor = factor
        self.jitter = jitter
        self._rng = rng or random.Random()
        self.delay = 0.0  # the last delay before jitter (0: no failure since the last reset)
        self.failures = 0

    def next(self) -> float:
        """The delay before the next attempt (seconds); each call counts one failure."""
        self.delay = min(max(self.delay * self.factor, self.first), self.cap)
        self.failures += 1
        if not self.jitter:
            return self.delay
        return self.delay * (1 - self.jitter + 2 * self.jitter * self._rng.random())

    def reset(self) -> None:
        """A success: the next failure waits ``first`` again."""
        self.delay = 0.0
        self.failures = 0
