"""Adaptive multilevel splitting (AMS / TAMS) for rare events of any keyed Markov chain.

Two estimators share one engine (``ams``: kill / clone; ``slots``: lockstep simulation): ``estimate`` (``tams``),
fixed-horizon P(max_{t<=T} score >= 1) with the curve p(T'); ``estimate_rate`` (``rate``), the escape rate
k = flux of basin exits x P(target before basin). Both also run particles that simulate a proposal and carry
their log likelihood ratio (``weight=``: importance sampling inside splitting), and ``estimate_is``
(``importance``) is plain importance sampling over independent trajectories. The caller supplies three pure
functions for ONE particle; the engine vmaps and jits them::

    init(key) -> state                 # pytree
    advance(state, key, t) -> state    # one period; t: int32 period index (check t -> check t+1)
    score(state) -> float              # >= 1 is the target; NaN = diverged (never counts)

Example (biased +-1 walk, reflecting at 0, target 8; tests/test_splitting.py has the exact DP answer)::

    import jax, jax.numpy as jnp
    from jumpsim import splitting

    def init(key):
        return jnp.int32(0)

    def advance(x, key, t):
        up = jax.random.uniform(key) < 0.3
        return jnp.maximum(x + jnp.where(up, 1, -1), 0).astype(jnp.int32)

    def score(x):
        return x.astype(jnp.float32) / 8

    res = splitting.estimate(init, advance, score, horizon=40, particles=32, replicas=20)
    print(res.p, res.p_low, res.p_high, res.p_curve[-1], res.particle_steps)
    rate = splitting.estimate_rate(init, advance, score, basin=1 / 8, interface=3 / 8, flux_trajectories=2,
                                   flux_periods=500, particles=32, replicas=20)
    print(rate.rate, rate.p_within(10_000))

Everything is in periods (one ``advance``); the caller converts to SGD steps. Scores are float32, periods int32,
host bookkeeping float64/int64 numpy; works with jax_enable_x64 on or off.
"""

from .ams import kill_count
from .importance import estimate_is
from .probe import lockstep_speed
from .rate import estimate_rate
from .results import LEVEL_GRID, EngineState, Log10, RateResult, TamsLog, TamsResult, combine
from .slots import MAX_BATCH, ROUND, SlotMeter, flux_batch, table_size
from .state import load_state, save_state, saved_progress
from .tams import estimate
