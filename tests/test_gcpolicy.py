"""cds.gcpolicy: what survives young collections while serving leaves the view of full collections."""

from __future__ import annotations

import gc

from cds import gcpolicy


def _tracked(obj: object) -> bool:
    """Still in one of the collector's generations (not frozen)."""
    return any(o is obj for o in gc.get_objects())


def test_survivors_of_a_generation_1_collection_are_frozen_while_on():
    gcpolicy.freeze_promoted()
    try:
        kept = [[i] for i in range(10)]
        gc.collect(1)
        assert not _tracked(kept) and not gc.get_objects(2)     # a full collection has nothing to walk
    finally:
        gcpolicy.freeze_promoted(False)
    more = [[i] for i in range(10)]
    gc.collect(1)
    assert _tracked(more)
