"""AMS / TAMS engine (jumpsim.splitting) against exact answers.

Statistical tests use fixed seeds and |estimate - exact| < 5 standard errors: for an approximately
normal mean that fails with probability 6e-7 < 1e-6 (the replica means below average >= 100 replicas).
Chains are built by cached factories so tests share compiled programs (the engine caches jit per
(advance, score) function object). Exact references are float64 numpy; the validation script
benchmarks/splitting_validation.py imports them from here.
"""

import os
import warnings
from functools import cache

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from scipy import stats

from jumpsim import intervals, splitting
from jumpsim import stats as stats_mod
from jumpsim.splitting import ams, slots

# ------------------------------------------------------------------------------------------ chains and exact answers


@cache
def walk(q: float, size: int):
    """+-1 walk from 0, up with probability q (dyadic, so float32 `u < q` is exact), lazily reflecting at 0
    (a step down from 0 stays at 0); integer score x / size: ties at every AMS iteration."""

    def init(key):
        return jnp.int32(0)

    def advance(x, key, t):
        up = jax.random.uniform(key, dtype=jnp.float32) < q
        return jnp.maximum(x + jnp.where(up, 1, -1), 0).astype(jnp.int32)

    def score(x):
        return x.astype(jnp.float32) / size

    return init, advance, score


def walk_curve(q: float, size: int, horizon: int) -> np.ndarray:
    """Exact P(walk reaches `size` by period T'), T' = 0..horizon (DP, `size` absorbing)."""
    p = np.zeros(size + 1)
    p[0] = 1.0
    out = [0.0]
    for _ in range(horizon):
        n = np.zeros(size + 1)
        n[size] = p[size]
        n[1:] += q * p[:-1]
        n[0] += (1 - q) * p[0]
        n[: size - 1] += (1 - q) * p[1:size]
        p = n
        out.append(p[size])
    return np.array(out)


@cache
def ar1(a: float, s: float, c: float):
    """x_{t+1} = a x_t + s N(0, 1), x_0 = 0, float32; score x / c (continuous: no ties)."""

    def init(key):
        return jnp.float32(0.0)

    def advance(x, key, t):
        return (a * x + s * jax.random.normal(key, dtype=jnp.float32)).astype(jnp.float32)

    def score(x):
        return x / c

    return init, advance, score


def ar1_curve(a: float, s: float, c: float, horizon: int, grid: int = 3000) -> np.ndarray:
    """Exact P(max_{t<=T'} x_t >= c), T' = 0..horizon: midpoint-rule DP of the killed density on
    [-9 sd, c] (relative error ~4e-6 at grid = 3000 vs 6000 for c = 23, a = 0.95)."""
    lo = -9 * s / np.sqrt(1 - a * a)
    h = (c - lo) / grid
    y = lo + (np.arange(grid) + 0.5) * h
    kern = stats.norm.pdf((y[:, None] - a * y[None, :]) / s) / s * h
    exit_ = stats.norm.sf((c - a * y) / s)
    hit = [0.0, stats.norm.sf(c / s)]
    f = stats.norm.pdf(y / s) / s * h  # killed density of x_1 times h
    for _ in range(2, horizon + 1):
        hit.append(hit[-1] + f @ exit_)
        f = kern @ f
    return np.array(hit[: horizon + 1])


def ruin(q: float, start: int, low: int, high: int) -> float:
    """P(+-1 walk from `start` hits `high` before `low`), up probability q."""
    r = (1 - q) / q
    return (r ** (start - low) - 1) / (r ** (high - low) - 1)


def walk_mfpt(q: float, size: int) -> float:
    """Mean periods for the lazily reflected walk to go from 0 to `size`."""
    a = np.zeros((size, size))
    for i in range(size):
        a[i, i] += 1
        if i + 1 < size:
            a[i, i + 1] -= q
        a[i, max(i - 1, 0)] -= 1 - q
    return float(np.linalg.solve(a, np.ones(size))[0])


def walk_flux(q: float, size: int, basin: int, interface: int, periods: int) -> tuple[float, float]:
    """Exact expected (crossings, exposure) of ONE flux trajectory of the walk (same rules as the engine:
    crossing = check at x >= interface while armed; armed by x <= basin; `size` absorbing)."""
    d = np.zeros((size + 1, 2))  # (position, armed) of trajectories not yet absorbed
    d[0, 0] = 1.0
    cross = expo = 0.0
    for t in range(periods + 1):
        c = d[interface:, 1].sum()
        cross += c
        armed = d[:, 1].copy()
        armed[interface:] = 0
        unarmed = d[:, 0].copy()
        armed[: basin + 1] += unarmed[: basin + 1]
        unarmed[: basin + 1] = 0
        unarmed[interface:] += d[interface:, 1]
        d = np.stack([unarmed, armed], 1)
        d[size] = 0
        if t == periods:
            break
        expo += d.sum()
        n = np.zeros_like(d)
        n[1:] += q * d[:-1]
        n[0] += (1 - q) * d[0]
        n[:-1] += (1 - q) * d[1:]
        d = n
    return cross, expo


@cache
def lane_walk(q_slow: float, q_fast: float, eps: float, size: int):
    """``walk`` with a hidden lane: at 0 a period first redraws the lane (fast with probability eps), then
    steps up with probability q_fast (fast lane) or q_slow. The score x / size does not see the lane, so
    the chance to reach `size` from a crossing state spreads over decades between the lanes: the DLN's
    case, where the score misses what drives the escape (a one-step collapse). State (x, lane) int32."""

    def init(key):
        return jnp.zeros(2, jnp.int32)

    def advance(s, key, t):
        k1, k2 = jax.random.split(key)
        lane = jnp.where(s[0] == 0, (jax.random.uniform(k1, dtype=jnp.float32) < eps).astype(jnp.int32), s[1])
        up = jax.random.uniform(k2, dtype=jnp.float32) < jnp.where(lane == 1, q_fast, q_slow)
        return jnp.stack([jnp.maximum(s[0] + jnp.where(up, 1, -1), 0), lane]).astype(jnp.int32)

    def score(s):
        return s[0].astype(jnp.float32) / size

    return init, advance, score


def lane_mfpt(q_slow: float, q_fast: float, eps: float, size: int) -> float:
    """Mean periods for ``lane_walk`` to go from 0 to `size` (linear solve over (x, lane), x < size)."""
    qs, idx = (q_slow, q_fast), lambda x, c: 2 * x + c
    a = np.eye(2 * size)
    for x in range(size):
        for c in (0, 1):
            moves = [((1 - eps) if x == 0 else (c == 0), 0), (eps if x == 0 else (c == 1), 1)]
            for pc, c2 in moves:
                if x + 1 < size:
                    a[idx(x, c), idx(x + 1, c2)] -= pc * qs[c2]
                a[idx(x, c), idx(max(x - 1, 0), c2)] -= pc * (1 - qs[c2])
    return float(np.linalg.solve(a, np.ones(2 * size))[0])


def z_score(estimate: float, exact: float, result) -> float:
    """(estimate - exact) in standard errors of the replica mean."""
    x = result.replica_p
    return (estimate - exact) / (x.std(ddof=1) / np.sqrt(len(x)))


# ------------------------------------------------------------------------------------------ (a) ties, curve

WALK = dict(q=0.25, size=12, horizon=60)  # p = 2.57e-5


@pytest.fixture(scope="module")
def walk_run():
    init, advance, score = walk(WALK["q"], WALK["size"])
    return splitting.estimate(init, advance, score, horizon=WALK["horizon"], particles=32, replicas=200, seed=1)


def test_walk_with_ties_is_unbiased(walk_run):
    exact = walk_curve(**WALK)[-1]
    res = walk_run
    assert res.extinct == 0 and res.capped == 0
    # |z| < 5: false failure < 1e-6 for the mean of 200 replicas
    assert abs(z_score(res.p, exact, res)) < 5, (res.p, exact, res.p_low, res.p_high)
    assert res.p_low < res.p < res.p_high
    # a tie rule that is off by a factor (1 - k/N) / (1 - K/N) per iteration would be ~ 30 SE away here
    assert res.log.killed[:, 0].mean() > 8  # ties: K > k = 7 on average
    assert res.particle_steps > 200 * 32 * 10 and res.reached.min() >= 1


def test_p_curve_matches_dp(walk_run):
    exact = walk_curve(**WALK)
    res = walk_run
    assert res.p_curve.shape == (WALK["horizon"] + 1,)
    assert res.p_curve[-1] == pytest.approx(res.p)
    assert np.all(np.diff(res.p_curve) >= 0) and res.p_curve[WALK["size"] - 1] == 0
    for t in (20, 30, 45):
        x = res.replica_p_curve[:, t]
        se = x.std(ddof=1) / np.sqrt(len(x))
        assert abs(x.mean() - exact[t]) < 5 * se, (t, x.mean(), exact[t], se)  # |z| < 5 as above


def test_level_curve_is_unbiased_at_fixed_levels(walk_run):
    """p_r(z) at the intermediate levels estimates P(max score >= z within T) = P(walk reaches ceil(z size)), exact
    by DP; it is non-increasing in z and >= the replica's p (deterministic properties of the estimator)."""
    res, size = walk_run, WALK["size"]
    lp, grid = res.replica_level_p, splitting.LEVEL_GRID
    assert lp.shape == (200, len(grid)) and not np.isnan(lp).any()
    assert np.all(np.diff(lp, axis=1) <= 0) and np.all(lp[:, -1] >= res.replica_p)
    checked = 0
    for g in range(len(grid)):
        m = int(np.ceil(grid[g] * size))
        if m < 2 or abs(grid[g] * size - round(grid[g] * size)) < 1e-3:
            continue
        exact = walk_curve(WALK["q"], m, WALK["horizon"])[-1]
        x = lp[:, g]
        se = x.std(ddof=1) / np.sqrt(len(x))
        assert abs(x.mean() - exact) < 5 * se + 1e-12, (grid[g], m, x.mean(), exact, se)  # |z| < 5 as above
        checked += 1
    assert checked >= 15  # levels 2..11 of 12, several grid points each


def test_level_bound_with_every_replica_extinct():
    """Target out of reach (walk to 40 within 30 periods): every replica ends with its particles tied, p = 0 and no
    interval; the level curve still estimates P(max score >= z) with an interval at a level every replica passed
    (the one with the tightest upper end), unbiased against DP (|z| < 5), and its upper end bounds p."""
    res = splitting.estimate(*walk(0.25, 40), horizon=30, particles=16, replicas=100, seed=5)
    assert res.extinct == 100 and res.p == 0 and np.isnan(res.p_high)
    b = res.level_bound()
    m = int(np.ceil(b.z * 40 - 1e-4))
    exact = walk_curve(0.25, m, 30)[-1]
    assert m >= 5 and exact < 0.05  # a level well above the start (its lowest replica stalled near 5 of 40)
    x = res.replica_level_p[:, int(np.argmin(np.abs(splitting.LEVEL_GRID - b.z)))]
    assert (x > 0).all() and b.value == pytest.approx(x.mean())
    assert abs(b.value - exact) < 5 * x.std(ddof=1) / np.sqrt(len(x)), (b, m, exact)
    assert b.low < b.value < b.high and (res.replica_level_p[:, -1] == 0).all()


# ------------------------------------------------------------------------------------------ (b) continuous scores


def test_ar1_rare_continuous():
    a, s, c, horizon = 0.95, 1.0, 18.0, 50  # p = 1.06e-7
    exact = ar1_curve(a, s, c, horizon)[-1]
    res = splitting.estimate(*ar1(a, s, c), horizon=horizon, particles=32, replicas=100, seed=2)
    assert abs(z_score(res.p, exact, res)) < 5, (res.p, exact, res.p_low, res.p_high)  # false failure < 1e-6
    assert res.log.killed[:, 0].max() == 7  # continuous scores: exactly k killed
    assert np.isfinite(res.log10.mean) and abs(res.log10.mean - np.log10(exact)) < 1


# ------------------------------------------------------------------------------------------ (c) rate form


def test_rate_birth_death():
    q, size, basin, interface = 0.25, 16, 1, 3
    res = splitting.estimate_rate(
        *walk(q, size),
        basin=basin / size,
        interface=interface / size,
        flux_trajectories=1,  # per replica: 100 in all
        flux_periods=3000,
        particles=32,
        replicas=100,
        seed=3,
        max_periods=5000,
    )
    cross, expo = walk_flux(q, size, basin, interface, 3000)
    flux = cross / expo
    # flux: crossings ~ Poisson (renewal, sub-Poisson here), |z| < 5 -> false failure < 1e-6
    assert abs(res.flux - flux) < 5 * np.sqrt(res.flux_crossings) / res.flux_exposure
    p_ab = ruin(q, interface, basin, size)  # 8.5e-8
    se = (res.p_ab_high - res.p_ab) / stats.t.ppf(0.975, 99)
    assert abs(res.p_ab - p_ab) < 5 * se, (res.p_ab, p_ab, se)
    # rate vs 1 / mean first-passage time; the model error of k = flux * p_ab is O(p_ab) relative
    k = 1 / walk_mfpt(q, size)
    sd_log = np.log(res.rate_high / res.rate) / 1.959964
    assert abs(np.log(res.rate / k)) < 5 * sd_log, (res.rate, k, res.rate_low, res.rate_high)
    assert res.rate_low < res.rate < res.rate_high and res.period_capped == 0
    p, lo, hi = res.p_within(1e6)
    assert lo < p < hi and p == pytest.approx(-np.expm1(-res.rate * 1e6))
    assert res.particle_steps > res.flux_exposure
    # level curve: P(reach ceil(z size) before the basin | crossing) = gambler's ruin from the interface
    lp, grid = res.replica_level_p, splitting.LEVEL_GRID
    assert np.all(lp[:, grid < interface / size] == 1) and np.all(np.diff(lp, axis=1) <= 0)
    for m in (5, 8, 12):
        g = int(np.flatnonzero(np.ceil(grid * size - 1e-4) == m)[0])
        e = stats_mod.rate_estimate(res.replica_crossings, res.replica_exposure, lp[:, g])
        se = (e.p_ab_high - e.p_ab) / stats.t.ppf(0.975, 99)
        assert abs(e.p_ab - ruin(q, interface, basin, m)) < 5 * se, (m, e.p_ab, ruin(q, interface, basin, m), se)
    b = res.level_bound()  # every replica reached the target, and the level curve falls to the top of the grid
    assert b.z == grid[-1] and b.low < b.value < b.high


LANE = dict(q_slow=0.25, q_fast=0.5, eps=1 / 128, size=16)  # k = 1.57e-4 per period, ~3 % of crossings fast


def lane_rates(estimates: int, seed: int = 1000) -> list:
    """``estimates`` independent rate-form estimates on ``lane_walk(**LANE)``, each of 32 replicas x 256
    particles, one flux trajectory of 800 periods per replica (~9 crossings each), interface x >= 3: the replica
    groups of one run (replicas are keyed by their global id and independent; one run shares the compiles and
    the engine's batches)."""
    kw = dict(flux_trajectories=1, flux_periods=800, particles=256, replicas=32 * estimates, seed=seed)
    res = splitting.estimate_rate(*lane_walk(**LANE), basin=0.0, interface=3 / LANE["size"], **kw)
    groups = np.arange(32 * estimates).reshape(estimates, 32)
    return [
        intervals.rate_estimate(res.replica_crossings[g], res.replica_exposure[g], res.replica_p_ab[g]) for g in groups
    ]


def test_rate_interval_covers_when_the_score_misses_the_channel():
    """Hidden-lane walk: the escape goes through the rare fast-lane crossings (committor 0.19 against 6e-7
    in the slow lane), which the score cannot tell apart. 40 independent estimates, 32 replicas x 256
    particles, ~9 crossings per replica. Every replica draws its own crossings, so the interval holds the
    spread of the committor over crossings; with one shared pool (the engine before schema 3) the same runs
    covered k 20 times of 40. Pass: >= 25 of 40 intervals cover 1 / MFPT; P(fail) < 1e-6 if the true
    coverage is >= 90 % (binomial tail)."""
    k = 1 / lane_mfpt(**LANE)
    covered, ratio = 0, []
    for e in lane_rates(40):
        covered += e.rate_low <= k <= e.rate_high
        ratio.append(e.rate / k)
        assert e.rate == pytest.approx(e.flux * e.p_ab)
    assert covered >= 25, covered
    # unbiased: the mean of k_hat / k within 5 standard errors of 1 (the ratio estimator's O(1/R) bias and
    # the O(p_ab) model error of k = flux x p_ab are ~1 %, far inside)
    assert abs(np.mean(ratio) - 1) < 5 * np.std(ratio, ddof=1) / np.sqrt(40), (np.mean(ratio), np.std(ratio))


def test_rate_without_crossings_is_zero_below_the_flux_bound():
    """An interface the flux phase never reaches (walk q = 0.25 from 0 to x >= 12 within 30 periods: impossible
    in fewer than 12 up-steps, probability < 1e-4 per trajectory): rate 0 with the flux's Poisson upper bound."""
    with pytest.warns(RuntimeWarning, match="no crossing"):
        res = splitting.estimate_rate(
            *walk(0.25, 16),
            basin=1 / 16,
            interface=12 / 16,
            flux_trajectories=2,
            flux_periods=30,
            particles=8,
            replicas=4,
            seed=0,
        )
    assert res.flux_crossings == 0 and res.rate == 0 and np.isnan(res.replica_p_ab).all()
    assert res.rate_high == pytest.approx(3.6889 / res.flux_exposure, rel=1e-4)


def test_rate_replicas_pool_exactly_and_empty_ones_cost_nothing():
    """Rate-form replicas are keyed by their global id: one run of 7 replicas equals the combination of 7
    one-replica runs (estimates, crossings, steps, iterations). A replica whose flux phase found no crossing
    is not simulated (0 iterations, NaN p) and adds nothing to the cost."""
    kw = dict(basin=0.0, interface=3 / 8, flux_trajectories=1, flux_periods=12, particles=8, seed=2)
    fns = walk(0.5, 8)  # 2 of the 7 replicas find no crossing
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)  # a one-replica run may find no crossing
        whole = splitting.estimate_rate(*fns, replicas=7, **kw)
        parts = splitting.combine([splitting.estimate_rate(*fns, replicas=1, replica_offset=i, **kw) for i in range(7)])
    empty = whole.replica_crossings == 0
    assert empty.any() and (~empty).any()
    assert (whole.iterations[empty] == 0).all() and np.isnan(whole.replica_p_ab[empty]).all()
    np.testing.assert_array_equal(whole.replica_p_ab, parts.replica_p_ab)
    np.testing.assert_array_equal(whole.replica_crossings, parts.replica_crossings)
    np.testing.assert_array_equal(whole.iterations, parts.iterations)
    assert whole.particle_steps == parts.particle_steps and whole.rate == parts.rate


# ------------------------------------------------------------------------------------------ (d) mechanics


def test_extinction_counted_and_steps_exact():
    """Target = one step up, horizon 1, N = 2 (k = 1): both down -> tie at the floor -> extinct (prob
    (1-q)^2); one up -> kill the other, clone replays 1 period; E p = q exactly."""
    q, r = 0.5, 2000
    res = splitting.estimate(*walk(q, 1), horizon=1, particles=2, replicas=r, seed=4)
    n_ext = (1 - q) ** 2 * r
    assert abs(res.extinct - n_ext) < 5 * np.sqrt(r * 0.25 * 0.75)  # binomial, |z| < 5
    assert set(np.unique(res.replica_p)) <= {0.0, 0.5, 1.0}
    assert res.extinct == np.sum(res.replica_p == 0) == np.sum(res.log.killed[:, 0] == 2)
    one_up = np.sum(res.log.killed[:, 0] == 1)
    assert res.particle_steps == 2 * r + one_up  # initial periods + one replayed period per clone
    assert abs(res.p - q) < 5 * res.replica_p.std() / np.sqrt(r)
    flat = splitting.estimate(*walk(q, 1), horizon=0, particles=2, replicas=r, seed=4)  # all tie at the floor
    assert flat.extinct == r and flat.p == 0 and np.isnan(flat.p_low) and np.isnan(flat.p_high)
    assert np.all(flat.replica_p_curve == 0) and flat.particle_steps == 0


def test_resume_is_bit_for_bit(tmp_path):
    init, advance, score = walk(0.25, 8)
    kw = dict(horizon=30, particles=16, replicas=8, seed=5)
    saved = []

    def hook(st):
        if int(st.iteration.max()) == 3 and not saved:
            splitting.save_state(tmp_path / "s.npz", st)
            saved.append(True)

    full = splitting.estimate(init, advance, score, on_iteration=hook, **kw)
    assert saved
    st = splitting.load_state(tmp_path / "s.npz", init)
    st = jax.tree.map(jnp.asarray, st)  # device arrays: the engine must not consume (donate) the caller's state
    for _ in range(2):  # the same state resumes twice
        resumed = splitting.estimate(init, advance, score, state=st, **kw)
        for f in ("replica_p", "replica_p_curve", "iterations", "reached", "replica_level_p"):
            np.testing.assert_array_equal(getattr(full, f), getattr(resumed, f))
        np.testing.assert_array_equal(full.log.z, resumed.log.z)
        assert full.particle_steps == resumed.particle_steps and full.p == resumed.p
    # the hook's last call is the final state, also when every replica is done at its first kill step
    calls = []
    with pytest.warns(RuntimeWarning, match="max_iterations"):
        splitting.estimate(init, advance, score, max_iterations=0, on_iteration=calls.append, **kw)
    assert calls[-1].done.all() and calls[-1].capped.all()


def test_combine_halves_equals_whole():
    init, advance, score = walk(0.25, 8)
    kw = dict(horizon=30, particles=16, seed=6)
    whole = splitting.estimate(init, advance, score, replicas=8, **kw)
    parts = [splitting.estimate(init, advance, score, replicas=4, replica_offset=o, **kw) for o in (0, 4)]
    both = splitting.combine(parts)
    np.testing.assert_array_equal(whole.replica_p, both.replica_p)
    np.testing.assert_array_equal(whole.replica_level_p, both.replica_level_p)
    np.testing.assert_array_equal(whole.log.killed, both.log.killed)
    assert (whole.p, whole.p_low, whole.particle_steps, whole.extinct) == (
        both.p,
        both.p_low,
        both.particle_steps,
        both.extinct,
    )


def test_batch_layout_does_not_matter():
    """max_batch splits every iteration into several padded batches: same answer bit for bit."""
    init, advance, score = walk(0.25, 8)
    kw = dict(horizon=30, particles=16, replicas=8, seed=5)
    a = splitting.estimate(init, advance, score, **kw)
    b = splitting.estimate(init, advance, score, max_batch=32, **kw)
    np.testing.assert_array_equal(a.replica_p_curve, b.replica_p_curve)
    assert a.particle_steps == b.particle_steps


def test_nondeterministic_replay_fails_loudly():
    """An advance that ignores its key (here: random steps for the initial population, then zero steps)
    cannot be replayed; the engine must refuse rather than continue with a biased clone."""
    replaying = []

    def init(key):
        return jnp.float32(0.0)

    def step(x, t):  # takes x and t so that XLA cannot hoist the "pure" callback out of the loop
        return np.float32(0.0 if replaying else np.random.rand())

    def advance(x, key, t):
        return x + jax.pure_callback(step, jax.ShapeDtypeStruct((), jnp.float32), x, t, vmap_method="sequential")

    def score(x):
        return x / 100

    with pytest.raises(RuntimeError, match="replayed survivor"):
        splitting.estimate(
            init, advance, score, horizon=20, particles=16, replicas=1, on_iteration=lambda st: replaying.append(1)
        )


def test_one_estimate_compiles_one_table():
    """The initial population and every iteration's clones go through one slot table of a fixed size, so a
    whole estimate compiles its round and its exchange once each (compiles cost seconds each; this is a
    speed property, checked by counting compilations rather than by timing)."""
    init, advance, score = walk(0.3, 7)
    before = slots.run_round._cache_size(), slots.exchange._cache_size()
    r = splitting.estimate(init, advance, score, horizon=40, particles=40, replicas=6, seed=2)
    assert r.iterations.max() > 3
    assert slots.run_round._cache_size() - before[0] == 1
    assert slots.exchange._cache_size() - before[1] == 1


def test_heartbeat_reports_do_not_change_the_estimate(monkeypatch):
    """on_iteration is also called every HEARTBEAT_S without a commit (a replica waiting on one long run must
    not silence the progress line); those extra calls see the same committed state and change nothing."""
    kw = dict(horizon=30, particles=16, replicas=8, seed=5)
    calls, beats = [], []
    a = splitting.estimate(*walk(0.25, 8), on_iteration=lambda st: calls.append(int(st.steps.sum())), **kw)
    monkeypatch.setattr(ams, "HEARTBEAT_S", -1.0)  # every round
    b = splitting.estimate(*walk(0.25, 8), on_iteration=lambda st: beats.append(int(st.steps.sum())), **kw)
    assert len(beats) > len(calls) and beats[-1] == calls[-1]
    np.testing.assert_array_equal(a.replica_p, b.replica_p)
    assert a.particle_steps == b.particle_steps


def test_one_device_gives_the_same_estimate_as_two():
    """The suite runs on two host devices; a GPU (or a 1-core machine) has one, so the slot table is half
    as wide and split over nothing. The estimate must not change, bit for bit (a path depends only on its
    key and start), and the single-device path must run at all (it once donated one buffer twice)."""
    import subprocess
    import sys
    from pathlib import Path

    init, advance, score = walk(0.25, 8)
    kw = dict(horizon=30, particles=16, replicas=8, seed=5)
    here = splitting.estimate(init, advance, score, **kw)
    kw_rate = dict(basin=0.0, interface=0.25, flux_trajectories=2, flux_periods=120, particles=16, replicas=8, seed=5)
    rate = splitting.estimate_rate(init, advance, score, **kw_rate)
    code = (
        f"import sys; sys.path[:0] = [{str(Path(__file__).parent)!r}, {str(Path(__file__).parents[1])!r}]\n"
        "import jax; jax.config.update('jax_enable_x64', True); assert jax.local_device_count() == 1\n"
        "from test_splitting import walk\nfrom jumpsim import splitting\nfrom jumpsim.splitting import slots\n"
        "n = slots.exchange._cache_size()\n"
        f"q = splitting.estimate_rate(*walk(0.25, 8), **{kw_rate!r})\n"
        "assert slots.exchange._cache_size() - n == 1, 'one table, but the exchange compiled more than once'\n"
        "print(repr([float(x) for x in q.replica_p_ab]).replace('nan', '-1.0'), q.particle_steps)\n"
        f"r = splitting.estimate(*walk(0.25, 8), **{kw!r})\n"
        "print(repr([float(x) for x in r.replica_p]), r.particle_steps)"
    )
    flags = [f for f in os.environ.get("XLA_FLAGS", "").split() if "device_count" not in f]  # keep e.g. the ISA
    env = {**os.environ, "XLA_FLAGS": " ".join([*flags, "--xla_force_host_platform_device_count=1"])}
    p = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env=env)
    assert p.returncode == 0, p.stderr[-2000:]
    rp, steps = p.stdout.strip().splitlines()[-1].rsplit(" ", 1)
    assert eval(rp) == [float(x) for x in here.replica_p] and int(steps) == here.particle_steps
    rp, steps = p.stdout.strip().splitlines()[-2].rsplit(" ", 1)
    assert eval(rp) == [float(x) for x in np.nan_to_num(rate.replica_p_ab, nan=-1.0)]
    assert int(steps) == rate.particle_steps and rate.flux_crossings > 0
