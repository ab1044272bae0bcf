"""The estimators of ``jumpsim rare`` (``jumpsim.methods``): one object each, the only place that looks at
``rare.method``; their rules that need no simulation."""

import numpy as np
import pytest

import jumpsim
from jumpsim import config, methods
from jumpsim.methods import rate as rate_method


def test_every_allowed_rare_method_has_an_estimator_and_back():
    """config validates rare.method against its own list (it sits below the estimators): the lists agree."""
    assert tuple(methods.METHODS) == config.RARE_METHODS
    for name, m in methods.METHODS.items():
        assert m.name == name and methods.get(name) is m


def test_rate_needs_a_stationary_dynamics_tams_does_not():
    cfg = jumpsim.load_config(
        None, ["train.lr.kind=piecewise", "train.lr.values=[0.1, 0.05]", "train.lr.boundaries=[100]"]
    )
    methods.get("tams").check(cfg)
    with pytest.raises(jumpsim.ConfigError, match="rare.method"):
        methods.get("rate").check(cfg)


def test_rate_defaults_put_the_interface_above_the_fluctuations():
    """Pilot defaults: basin = median score, interface = 99th percentile but at least INTERFACE_FLOOR (small
    fluctuations around 0: the floor; a wide spread: its own percentile); explicit settings win; NaN and
    target scores are ignored."""
    xi = np.random.default_rng(0).normal(0.0, 0.01, 10_000)
    basin, interface = rate_method.levels(np.append(xi, [np.nan, 1.0]), None, None)
    assert abs(basin) < 1e-3 and interface == rate_method.INTERFACE_FLOOR
    basin, interface = rate_method.levels(xi * 10, None, None)  # 99th percentile 0.23
    assert interface == pytest.approx(np.quantile(xi * 10, 0.99)) and interface > rate_method.INTERFACE_FLOOR
    assert rate_method.levels(xi, -0.5, 0.05) == (-0.5, 0.05)
    assert rate_method.levels(xi, 0.3, None) == (0.3, pytest.approx(0.32))  # floor below the basin: basin + 0.02
    # "pNN": the pilot's percentile without the floor (crossings at small eta, for the level bound)
    p90 = rate_method.levels(xi, None, "p90")[1]
    assert p90 == pytest.approx(np.quantile(xi, 0.9)) and p90 < rate_method.INTERFACE_FLOOR
    assert jumpsim.load_config(None, ['rare.interface="p97.5"']).rare.interface == "p97.5"


def _tams_row(**kw) -> dict:
    row = dict(
        estimate_id="e0",
        method="tams",
        score="sigma",
        start_rank=3,
        level=2,
        direction="down",
        horizon=1000,
        replicas=2,
        particles=32,
        extinct=0,
        seed_steps=10_000,
        proposal="uniform",
        resolved=True,
        p=0.2,
        p_low=0.0179,
        p_high=1.0,
        p_bound=0.56,
        bound_level=0.8,
        log10_p_lower_bound=None,
        stalled_level=None,
    )
    return {**row, **kw}


def test_tams_shows_the_level_bound_where_it_is_tighter_than_the_interval():
    """Two replicas leave the interval's upper end at 1 while the level curve bounds p by 0.56: both are shown,
    so the printed interval does not contradict the bound in the JSON; a looser bound is not printed."""
    lines = "\n".join(methods.get("tams").lines(_tams_row(), "95%"))
    assert "[0.0179, 1]" in lines and "bound from the level curve: P(rank <= 2 within 1,000 steps) <= 0.56" in lines
    lines = "\n".join(methods.get("tams").lines(_tams_row(p_high=0.4, p_bound=0.9), "95%"))
    assert "bound from the level curve" not in lines


def test_rate_bracket_takes_the_flux_bound_where_no_level_curve_exists():
    """Rate form at small eta: no crossing of the first interface, so no level curve; the bracket's upper end is
    the flux's bound on the rate turned into P within the horizon (never "<= ?")."""
    row = dict(
        _tams_row(method="rate", horizon=100_000, p=0.0, p_low=0.0, p_high=0.0141, p_bound=None, bound_level=None),
        log10_p_lower_bound=-23789.0,
        p_lower_bound=0.0,
        lower_bound_draws=12_500,
    )
    (line,) = methods.base.bracket_line(row, "95%")
    assert "10^-23789 <= P(rank <= 2 within 100,000 steps) <= 0.0141" in line and "flux's bound" in line
    (line,) = methods.base.bracket_line({**row, "p_bound": 0.002}, "95%")
    assert "<= 0.002 " in line and "the level curve" in line and "a path of 12,500 draws" in line
    (line,) = methods.base.bracket_line({**row, "lower_bound_keep": 0.75}, "95%")
    assert "12,500 steps drawing among the 75% of entries" in line
