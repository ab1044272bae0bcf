"""jumpsim.hazard: the windows in which one step could collapse sigma_3."""

import numpy as np
import pandas as pd
import pytest

from jumpsim.hazard import collapse_windows


def _frame(counts_by_seed, every=5, k=80, s3_by_seed=None):
    rows = []
    for seed, counts in counts_by_seed.items():
        for i, c in enumerate(counts):
            s3 = s3_by_seed[seed][i] if s3_by_seed else 1.0
            rows.append({"config_id": "x", "seed": seed, "step": (i + 1) * every, "over_10": c, "entries": k, "s3": s3})
    return pd.DataFrame(rows)


def test_windows_are_runs_of_capable_checks_per_seed():
    # seed 0: a window of 2 checks (1 then 2 entries), a gap, a window of 1 check; seed 1: one window of 3 checks
    # that ends the run; a run must not join across seeds (seed 0 ends capable, seed 1 starts capable)
    df = _frame({0: [0, 1, 2, 0, 0, 1], 1: [1, 1, 1, 0]})
    w = collapse_windows(df, 10.0)
    assert w["windows"] == 3 and w["every"] == 5 and w["states"] == 10
    assert w["length_median"] == 10 and w["length_mean"] == pytest.approx((10 + 5 + 15) / 3)
    assert w["capable_share"] == pytest.approx(6 / 10)
    assert w["hazard_per_step"] == pytest.approx(7 / 10 / 80)
    p = [1 - (79 / 80) ** 5 * (78 / 80) ** 5, 1 - (79 / 80) ** 5, 1 - (79 / 80) ** 15]
    assert w["p_draw"] == pytest.approx(np.mean(p))
    assert w["windows_per_step"] == pytest.approx(3 / 50)


def test_burn_in_drops_the_early_checks():
    df = _frame({0: [1, 1, 0, 0, 1, 0]})
    w = collapse_windows(df, 10.0, burn_in=10)  # steps 5 and 10 dropped: one window left, at step 25
    assert w["windows"] == 1 and w["states"] == 4 and w["length_mean"] == 5


def test_p_draw_matches_simulated_sgd_draws():
    """p_draw is the chance that uniform draws hit a collapsing entry in the window: against 20,000 simulated
    windows (binomial sd of the frequency <= 0.0036; tolerance 6 sd, false failure < 1e-8)."""
    df = _frame({0: [0, 3, 1, 2, 0]}, every=4, k=20)
    w = collapse_windows(df, 10.0)
    rng = np.random.default_rng(0)
    n = np.repeat([3, 1, 2], 4)  # collapsing entries at each of the window's 12 steps (entries 0..n-1)
    hit = (rng.integers(0, 20, size=(20_000, 12)) < n).any(axis=1)
    assert abs(hit.mean() - w["p_draw"]) < 6 * 0.0036


def test_taken_counts_windows_closed_by_a_fall_and_thin_input_is_refused():
    # seed 0: a window closed by sigma_3 2.0 -> 0.1 (a 20x fall: taken); seed 1: one closed without a fall;
    # seed 2: a window still open at the last check (not counted)
    counts = {0: [0, 1, 0], 1: [1, 0, 0], 2: [0, 0, 1]}
    s3 = {0: [2.0, 2.0, 0.1], 1: [2.0, 1.9, 1.9], 2: [2.0, 2.0, 2.0]}
    w = collapse_windows(_frame(counts, s3_by_seed=s3), 10.0)
    assert w["windows"] == 3 and w["taken"] == pytest.approx(0.5)
    with pytest.raises(ValueError, match="at least 2"):
        collapse_windows(_frame({0: [1, 1, 1]}), 10.0, burn_in=10)
