"""The estimators of ``jumpsim rare`` (``rare.method``), one module each: ``tams`` (P within the horizon by
splitting), ``rate`` (escape rate per step) and ``importance`` (plain importance sampling, "is"). Each runs
plain SGD or the proposal of ``rare.proposal`` (``jumpsim.proposals``). See ``base.Method`` for what an
estimator provides."""

from . import importance, rate, tams
from .base import Columns, Estimate, Method, Work

METHODS: dict[str, Method] = {m.name: m for m in (tams.METHOD, rate.METHOD, importance.METHOD)}


def get(name: str) -> Method:
    """The estimator called `name` (a config's rare.method, or a table's ``method`` column)."""
    return METHODS[name]
