from __future__ import annotations

import gc
from collections.abc import Iterator

import pytest

from meshplate_core import heap


@pytest.fixture
def restored() -> Iterator[None]:
    thresholds = gc.get_threshold()
    yield
    gc.unfreeze()
    gc.set_threshold(*thresholds)


@pytest.mark.usefixtures("restored")
def test_settle_freezes_what_start_up_allocated_and_collects_less_often() -> None:
    started = {"a": [1, 2]}

    heap.settle()

    # Out of every generation the collector scans.
    assert not any(tracked is started for tracked in gc.get_objects())
    assert gc.get_freeze_count() > 0
    assert gc.get_threshold() == (heap.YOUNG_THRESHOLD, *heap.OLDER_THRESHOLDS)


@pytest.mark.usefixtures("restored")
def test_cycles_made_after_settling_are_still_collected() -> None:
    heap.settle()

    class Node:
        other: Node

    first, second = Node(), Node()
    first.other, second.other = second, first
    del first, second

    assert gc.collect() >= 2
