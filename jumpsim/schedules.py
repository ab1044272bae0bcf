"""Learning-rate and ridge schedules as jittable functions of the step (optax-style)."""

from __future__ import annotations

from collections.abc import Callable

import jax.numpy as jnp
import optax

from .config import Schedule


def make(s: Schedule) -> Callable:
    """``Schedule`` -> ``step -> value`` usable inside ``jit``/``scan`` (twin of
    ``Schedule.value_at``, which tests compare against)."""
    if s.kind == "constant":
        return optax.constant_schedule(s.values[0])
    if s.kind == "piecewise":
        return optax.join_schedules([optax.constant_schedule(v) for v in s.values], list(s.boundaries))
    low, high, period = s.low, s.high, s.period
    if s.shape == "square":
        return lambda step: jnp.where((step % period) < period / 2, high, low)
    return lambda step: low + (high - low) * 0.5 * (1.0 + jnp.cos(2 * jnp.pi * (step % period) / period))
