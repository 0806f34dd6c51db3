"""core.backoff: exponential delays with a cap and jitter, reset after a success."""

from __future__ import annotations

import random

import pytest

from core.backoff import Backoff


def test_doubles_up_to_the_cap_and_resets():
    retry = Backoff(0.5, 15.0)
    assert [retry.next() for _ in range(8)] == [0.5, 1.0, 2.0, 4.0, 8.0, 15.0, 15.0, 15.0]
    assert retry.failures == 8
    retry.reset()
    assert retry.next() == 0.5 and retry.failures == 1


def test_jitter_spreads_each_delay_within_its_share():
    retry = Backoff(0.25, 10.0, jitter=0.2, rng=random.Random(1))
    for expected in (0.25, 0.5, 1.0, 2.0, 4.0, 8.0, 10.0, 10.0):
        delay = retry.next()
        assert expected * 0.8 <= delay <= expected * 1.2
        assert retry.delay == expected
    delays = {round(Backoff(1.0, 1.0, jitter=0.5, rng=random.Random(i)).next(), 6) for i in range(20)}
    assert len(delays) > 10  # not all the same: clients do not retry in step


def test_other_factors():
    retry = Backoff(1.0, 100.0, factor=3.0)
    assert [retry.next() for _ in range(5)] == [1.0, 3.0, 9.0, 27.0, 81.0]


@pytest.mark.parametrize("args", [(0, 1), (2, 1), (1, 2, 0.5), (1, 2, 2.0, 1.0)])
def test_nonsense_is_refused(args):
    first, cap, *rest = args
    kwargs = {}
    if rest:
        kwargs["factor"] = rest[0]
    if len(rest) > 1:
        kwargs["jitter"] = rest[1]
    with pytest.raises(ValueError):
        Backoff(first, cap, **kwargs)
