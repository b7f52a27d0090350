"""The cyclic garbage collector, out of the way of what lives as long as the process (the console
script's imports, the service's warm-up) and of a read, which makes many objects but little
garbage."""

from __future__ import annotations

import contextlib
import gc

# Container allocations between two collections of the youngest generation (Python's default is
# 700). A read allocates in bursts of objects that live to its end: a study's headers, and
# highdicom's tables of the standard (its first SR parses a 22 MB JSON file into some 200 000
# dicts and lists). At 700 every young collection walks the burst again, and the burst sets off
# collections of the whole heap; at this size a read's objects are walked once or twice. The
# older generations are collected after 10 and 100 young collections, as before, so every
# collection comes ~28 times fewer allocations apart: cyclic garbage waits that much longer (in
# a service, a protocol read adds ~1 100 tracked objects, so ~18 reads between young collections).
YOUNG_GENERATION = 20_000


@contextlib.contextmanager
def collector_off():
    """No collection while a study is read: a 300-slice protocol read sets off some 10 young
    collections (~15 ms) that find next to nothing (it leaves ~500 objects in cycles). While the
    collector is off every new object stays young, so what was made is frozen before it comes
    back: else the first young collection after it walks all of that (~27 ms). Frozen objects
    are still freed when nothing refers to them; only the read's few cycles are never collected
    (what runs after it, such as the follow-ups of an interactive read, is collected as usual)."""
    enabled = gc.isenabled()
    gc.disable()
    try:
        yield
    finally:
        gc.freeze()
        if enabled:
            gc.enable()


@contextlib.contextmanager
def collector_paused():
    """Imports make modules, classes and tables that mostly live as long as the process, so the
    collector is off while they are made (else it walks them again and again) and they are
    frozen out of its way (the little garbage they left, ~0.4 MiB, included); it comes back with
    a young generation sized for a read's bursts."""
    try:
        with collector_off():
            yield
    finally:
        gc.set_threshold(YOUNG_GENERATION, *gc.get_threshold()[1:])
