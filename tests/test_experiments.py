"""Small versions of the report's experiments (a)-(c) (data/experiments), run in CI.

The configs are data/experiments/base.toml (the suite's problem, model and detector, the same
file every experiment extends) plus the overrides below; every seed starts from the committed
rank-3 minimum rank3_start.npz. XLA's CPU code differs by instruction set (AVX-512, AVX2,
SSE4.2) and SGD at large eta is chaotic, so no count here is tuned on one machine: each
assertion is either a zero count of an outcome that is not chaotic (gradient descent at a
minimum, SGD at eta = 0.05, up-jumps after a kick) or a binomial lower tail with failure
probability below 1e-6 under the rate the full runs measured (data/results/REPORT.md).
"""

import sys
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from scipy import stats as sps

import jumpsim
from jumpsim import setup
from jumpsim.stats import traces

# the suite's modules (registry, paths, packs) live beside its driver, data/experiments/run.py
sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "data" / "experiments"))

import gpu_pack
import suite

FAIL = 1e-6


def start_facts(path, cfg, ridge=None) -> dict:
    """``jumpsim.setup.start_facts`` of a committed start file."""
    with np.load(path) as z:
        return setup.start_facts([z[f"W{l + 1}"] for l in range(len(z.files))], cfg, ridge)


# Section (c) of data/results/REPORT.md: with eta = 0.14 for 50k steps from the start file,
# KICK_REACHED of KICK_SEEDS seeds had reached rank <= 2 by the end of the kick (step 50,000).
KICK_REACHED, KICK_SEEDS = 45, 512


def suite_config(*overrides: str):
    """base.toml (loaded on its own, so relative files resolve in data/experiments) from the start file."""
    start = ['model.init="file"', 'model.init_file="rank3_start.npz"', "run.trace_seeds=0"]
    return jumpsim.load_config(suite.BASE, start + list(overrides))


def binomial_floor(k: int, n: int, seeds: int) -> int:
    """The count t to assert X >= t for X ~ Binomial(seeds, p), p the lower end of the 95 % Wilson
    interval of the measured k of n: P(X < t) < FAIL (conservative: p is below the estimate)."""
    p = sps.binomtest(k, n).proportion_ci(confidence_level=0.95, method="wilson").low
    t = int(sps.binom.ppf(FAIL, seeds, p))  # smallest t with P(X <= t) >= FAIL
    assert t >= 1 and sps.binom.cdf(t - 1, seeds, p) < FAIL
    return t


def test_a_start_is_a_rank3_critical_point_and_gradient_descent_stays_there():
    base = suite.base_config()
    facts = start_facts(suite.START, base)  # numpy float64 from the committed file
    assert facts["rank"] == 3 > base.problem.rank
    assert facts["grad_norm"] < 1e-4  # a critical point
    sv = facts["singular_values"]
    assert sv[2] > 1.0 and sv[3] < 1e-3  # a clear gap around the threshold
    cfg = suite_config('train.batch="full"', "train.steps=20000", "run.seeds=2", "run.chunk=2")
    f = jumpsim.simulate(cfg)
    runs = f["runs"]
    assert (runs.initial_rank == 3).all() and (runs.final_rank == 3).all() and (runs.status == "ok").all()
    assert f["events"].empty and (runs.n_events == 0).all()


@pytest.mark.slow
def test_b_c_sgd_escapes_at_large_eta_only_and_does_not_jump_back():
    # eta = 0.05: SGD stays in the rank-3 basin (the full runs never saw a jump at eta <= 0.10)
    small = jumpsim.simulate(suite_config("train.lr=0.05", "train.steps=20000", "run.seeds=64", "run.chunk=64"))
    assert (small["runs"].initial_rank == 3).all() and (small["runs"].status == "ok").all()
    assert small["events"].empty
    # the kick of experiment (c), cut to 10k steps at eta = 0.05 after it
    boundary, seeds = 50000, 320
    kick = suite_config(
        "train.lr.kind=piecewise",
        "train.lr.values=[0.14, 0.05]",
        f"train.lr.boundaries=[{boundary}]",
        f"train.steps={boundary + 10000}",
        f"run.seeds={seeds}",
        f"run.chunk={seeds}",
    )
    fk = jumpsim.simulate(kick)
    assert (fk["runs"].initial_rank == 3).all()
    pas = fk["passages"]
    reached = int(((pas.level == 2) & (pas.step < boundary)).sum())
    floor = binomial_floor(KICK_REACHED, KICK_SEEDS, seeds)
    assert reached >= floor, (reached, floor)
    ev = fk["events"]
    assert ((ev.direction == "up") & (ev.step >= boundary)).sum() == 0  # one way in the small-eta phase


def test_start_files_are_critical_points_at_their_own_ridge():
    # each ridge's committed GD minimum is a rank-3 critical point at that ridge (numpy float64), and not
    # at the base's ridge: the files are not interchangeable
    cfg = suite.base_config()
    for ridge in (5e-4, 2e-3):
        path = suite.start_path(ridge)
        own, base = start_facts(path, cfg, ridge), start_facts(path, cfg)
        assert own["rank"] == 3 and own["grad_norm"] < 1e-4, (ridge, own["grad_norm"])
        assert base["grad_norm"] > 1e-3
    # the rank-2 minimum of (n): rank 2, sigma_3 zero to rounding, a critical point at the base's ridge
    facts = start_facts(suite.RANK2, cfg)
    assert facts["rank"] == 2 and facts["singular_values"][2] < 1e-10 and facts["grad_norm"] < 1e-8


def test_gpu_pack_gives_the_same_statistics(tmp_path, tiny):
    # a dataset packed for the trip back from a GPU (compact runs table) and read by the report gives
    # the same first passages and rates as the whole dataset
    import tarfile

    from jumpsim import stats

    jumpsim.run([tiny("run.seeds=32", "run.chunk=16", "train.steps=2000")], tmp_path / "ds", progress=False)
    gpu_pack.pack(tmp_path / "ds", tmp_path / "ds.tar")
    (tmp_path / "res" / suite.GPU).mkdir(parents=True)
    with tarfile.open(tmp_path / "ds.tar") as tar:
        tar.extractall(tmp_path / "res" / suite.GPU, filter="data")
    packed = suite.load_pack(tmp_path / "res", ("ds",))
    whole = jumpsim.read_dataset(tmp_path / "ds")
    fp_a = stats.first_passage(packed["runs"], packed["passages"]).reset_index(drop=True)
    fp_b = stats.first_passage(whole["runs"], whole["passages"]).reset_index(drop=True)
    assert len(fp_a) > 0 and fp_a[["k", "n", "p"]].equals(fp_b[["k", "n", "p"]])
    r_a, r_b = stats.rates(packed["runs"], packed["events"]), stats.rates(whole["runs"], whole["events"])
    assert r_a["count"].sum() > 0 and r_a["count"].tolist() == r_b["count"].tolist()
    assert r_a.exposure_steps.tolist() == r_b.exposure_steps.tolist()
    with pytest.raises(SystemExit, match="twice"):
        suite.load_pack(tmp_path / "res", ("ds", "ds"))


def test_collapse_precursor_counts_falls_per_loss_bin():
    """Report (o): a check counts in its loss bin if it is in the basin (rank >= 3, sigma_3 >= a quarter of the
    seed's first value) and has a next check; it is a fall if sigma_3 drops more than 10x by that check."""
    import numpy as np
    import pandas as pd

    rows = []
    for seed, s3s, losses, ranks in [
        (0, [2.0, 2.1, 0.1, 0.05], [0.005, 0.2, 0.2, 0.2], [3, 3, 3, 2]),  # the 2.1 -> 0.1 fall at loss 0.2
        (1, [2.0, 1.9, 1.8], [0.005, 0.005, 0.5], [3, 3, 3]),  # no fall; the last check has no next one
    ]:
        for i, (s3, loss, rank) in enumerate(zip(s3s, losses, ranks)):
            rows.append(
                {"seed": seed, "step": 100 * i, "singular_values": np.array([5.0, 3.0, s3]), "loss": loss, "rank": rank}
            )
    pre = traces.collapse_precursor(traces.sigma3_frame(pd.DataFrame(rows)), 10.0).set_index("bin")
    # seed 0: checks at loss 0.005 (no fall), 0.2 (fall); its third check (sigma_3 0.1 < 0.5) is out of the
    # basin; seed 1: two checks at 0.005
    assert pre.loc["0-0.01", "checks"] == 3 and pre.loc["0-0.01", "falls"] == 0
    assert pre.loc["0.15-0.3", "checks"] == 1 and pre.loc["0.15-0.3", "falls"] == 1
    assert set(pre.index) == {"0-0.01", "0.15-0.3"}


def test_quick_caps_every_config_and_keeps_its_id():
    # --quick: at most 32 seeds (chunk, traced) and splitting of at most 16 particles x 4 replicas and 64 flux
    # seeds, also where SPLITTING sets its own sizes; config_id excludes [run] and [rare], so ids do not change
    full = suite.load_experiment(suite.HERE / "h_splitting.toml")
    suite.set_quick(True)
    try:
        quick = suite.load_experiment(suite.HERE / "h_splitting.toml")
        split = [c for cfg in quick for c in suite.splitting_configs("h_splitting", cfg)]
        base = suite.base_config()
    finally:
        suite.set_quick(False)
    assert [c.config_id for c in quick] == [c.config_id for c in full]
    assert base.config_id == suite.base_config().config_id
    assert all(c.run.seeds <= 32 and c.run.chunk <= 32 and c.run.trace_seeds <= 32 for c in quick + split)
    assert all(c.rare.particles <= 16 and c.rare.replicas <= 4 and c.rare.flux_seeds <= 64 for c in split)
    assert {c.rare.method for c in split} == {"tams", "rate"} and len(split) == 4 * len(quick)
    assert suite.quick(full[0]) is full[0]  # off again: configs pass unchanged


def test_report_sections_splice_into_a_report_and_keep_the_rest():
    """``run.py --sections``: a rebuilt section replaces the one of the same letter (its subsections too), a new one
    goes before the configurations, and every other line stays as it was."""
    from report import splice

    old = "# R\n\n## (a) A\n\nold a\n\n## (r) R\n\nold r\n\n### (r2) sub\n\nx\n\n## Configurations\n\nc\n"
    new = splice(old, ["## (r) R", "", "new r", "", "## (t) T", "", "new t", ""])
    assert new == "# R\n\n## (a) A\n\nold a\n\n## (r) R\n\nnew r\n\n## (t) T\n\nnew t\n\n## Configurations\n\nc\n"


def test_escape_law_leaves_out_sections_without_data(tmp_path):
    """``run.py --escape-law`` in a checkout without the datasets: only the sections whose inputs exist are
    rendered (here (y), from its committed per-start cache, and (z), from the committed benchmark results), so
    ``splice`` keeps every other section's old text."""
    import shutil

    from report import escape_law

    shutil.copy(suite.RESULTS / "y_barrier.parquet", tmp_path / "y_barrier.parquet")
    lines, rows = escape_law(tmp_path, pd.read_parquet(suite.RESULTS / "j_curve.parquet"))  # (j)'s committed curve
    assert [x[:6] for x in lines if x.startswith("## (")] == ["## (y)", "## (z)"]
    assert [m[:3] for _, m, _ in rows] == ["(y)"]  # its claims row: the fitted slope of (j) beside the predicted
    assert any(x.startswith("| (j) ridge 0.001 (`rank3_start.npz`)") and x.endswith("] |") for x in lines)
    assert any(x.startswith("| 0.1 | 100,000 | 10^-") for x in lines)  # (z): the bracket at eta 0.10


def test_small_eta_sets_each_fitted_law_against_the_bounds_of_i():
    """(t) extrapolates each law of the (j) ridge-1e-3 curve to (i)'s small learning rates: a law whose k there
    exceeds the rate form's bound is rejected, one below is not; TAMS rows (no bound on k) are left out."""
    from report import t_laws

    fits = {
        "arrhenius": {"params": {"a": 34.0, "slope": 6.6}},  # k(0.10) = e^(34 - 66) = 1.3e-14
        "power": {"params": {"a": 60.0, "slope": 30.0}},  # k(0.10) = e^(60 - 69.1) = 1.1e-4: above
    }
    laws = [{"curve": t_laws.SMALL_CURVE, "limit": 0.05, "etas": [0.12, 0.13, 0.14], "fits": fits}]
    laws.append({"curve": "(p) depth 4", "limit": 0.05, "etas": [0.08, 0.09], "fits": fits})  # another start
    bounds = [
        {"eta": 0.1, "method": "rate", "p_bound": 0.003, "horizon": 100_000, "k_bound": 3e-8},
        {"eta": 0.1, "method": "tams", "p_bound": 0.03, "horizon": 100_000, "k_bound": float("nan")},
    ]
    small = t_laws.small_eta(laws, bounds)
    assert [(r["form"], r["above"]) for r in small] == [("arrhenius", False), ("power", True)]
    assert np.isclose(small[0]["k"], np.exp(34 - 66)) and np.isclose(small[1]["k"], np.exp(60 + 30 * np.log(0.1)))
    text = "\n".join(t_laws._small_lines(small))
    assert "3e-08" in text and "(above: rejected)" in text and "rejected there: power law (< 5 %, eta 0.1)" in text
