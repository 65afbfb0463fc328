"""What a long-running host does with its start-up objects: collected once, then kept out of the collector's passes."""

from __future__ import annotations

import gc
import weakref

from local_runner.host.host import exempt_start_up_objects_from_gc


class _Node:
    """An object that can sit in a reference cycle (only the cyclic collector frees those)."""

    other: _Node | None = None


def _cycle() -> _Node:
    node = _Node()
    node.other = node
    return node


def test_the_garbage_of_start_up_is_collected_and_what_lives_is_left_out_of_later_passes() -> None:
    was_enabled = gc.isenabled()
    gc.disable()  # no automatic pass frees the garbage below before the call does
    dead = weakref.ref(_cycle())  # garbage already, freed only by a collection
    alive = _cycle()
    try:
        exempt_start_up_objects_from_gc()
        # Frozen without a collection first, this cycle would never be freed.
        assert dead() is None
        assert not any(tracked is alive for tracked in gc.get_objects())
        # What comes after start-up is collected as before.
        later = weakref.ref(_cycle())
        gc.collect()
        assert later() is None
    finally:
        gc.unfreeze()  # the test process starts many hosts: give it its collector back
        if was_enabled:
            gc.enable()
