"""The work budget's clocks (docs/decisions.md §24): CPU time of the running thread is what counts."""

from __future__ import annotations

import time

import pytest

from cds.core import budget
from cds.core.budget import WorkBudget, WorkLimitExceeded


def test_waiting_inside_a_stretch_is_not_work():
    # wall time past the limit sends check() to the CPU clock, which finds the budget unspent
    b = WorkBudget(20)
    with b.running():
        time.sleep(0.05)
        b.check()
        budget.check()
    assert b.used_ms < 20


def test_stretches_nest_and_leave_nothing_in_force():
    b = WorkBudget(1000)
    with budget.in_force(None):
        with b.running():
            assert budget.current() is b
            with b.running():
                assert budget.current() is b
            assert budget.current() is b and b._since is not None     # still the outer stretch
        assert budget.current() is None and b._since is None
    assert budget.current() is None


def test_a_spent_budget_is_refused_at_the_next_check_of_any_stretch():
    b = WorkBudget(5)
    with pytest.raises(WorkLimitExceeded):
        with b.running():
            for _ in range(10 ** 8):        # seconds of checks: far beyond 5 ms
                b.check()
            pytest.fail("the budget never ran out")
    assert budget.current() is None
    with pytest.raises(WorkLimitExceeded):
        with b.running():
            budget.check()                  # the next stretch starts spent
