"""cds.gcpolicy: what survives young collections while serving leaves the view of full collections."""

from __future__ import annotations

import gc

from cds import gcpolicy


def test_survivors_of_a_generation_1_collection_are_frozen_while_on():
    gcpolicy.freeze_promoted()
    try:
        kept = [[i] for i in range(1000)]
        before = gc.get_freeze_count()
        gc.collect(1)
        assert gc.get_freeze_count() >= before + len(kept)
        assert not gc.get_objects(2)          # a full collection has nothing to walk
    finally:
        gcpolicy.freeze_promoted(False)
    more = [[i] for i in range(1000)]
    before = gc.get_freeze_count()
    gc.collect(1)
    assert gc.get_freeze_count() == before and len(gc.get_objects(2)) >= len(more)
