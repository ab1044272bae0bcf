"""Laws and recipes fitted to jump counts: the Arrhenius form of the escape rate against the learning rate,
and the expected time to success of restarting attempts."""

from __future__ import annotations

import numpy as np
from scipy import stats as sps

from ..intervals import proportion_ci


def arrhenius_fit(inv_eta, counts, exposure, level: float = 0.95, quasi: bool = False) -> dict:
    """Fit the Freidlin-Wentzell / Arrhenius form k(eta) = exp(a - b / eta) to jump counts.

    ``inv_eta`` (P,) = 1 / eta of each setting, ``counts`` (P,) jumps seen there, ``exposure`` (P,)
    steps observed there. The counts are Poisson with mean exposure * k (a Poisson GLM with log link,
    fitted by Newton's method; zero counts take part). Returns a, b with Wald intervals from the
    observed information, the deviance and its chi-square goodness-of-fit p-value on P - 2 degrees of
    freedom (a small p-value says the data do not follow the form), ``log_k(inv_eta)`` to draw or
    extrapolate the fit and ``log_k_interval(inv_eta) -> (low, high)``, its Wald interval there. With
    ``quasi`` the covariance is scaled by max(1, deviance / dof) (quasi-Poisson): the intervals widen by
    the scatter the form does not explain, instead of trusting it (``scale`` says by how much)."""
    x = np.asarray(inv_eta, float)
    y = np.asarray(counts, float)
    e = np.asarray(exposure, float)
    if len(np.unique(x[y > 0])) < 2:
        # with jumps at one learning rate only, the likelihood keeps rising as b -> +-inf: no fit exists
        raise ValueError("arrhenius_fit needs jumps at two or more learning rates")
    x0 = float(x.mean())
    X = np.column_stack([np.ones_like(x), -(x - x0)])  # log k = c - b (x - x0)
    beta = np.array([np.log(y.sum() / e.sum()), 0.0])
    for _ in range(200):
        mu = e * np.exp(X @ beta)
        info = X.T @ (mu[:, None] * X)
        step = np.linalg.solve(info, X.T @ (y - mu))
        beta = beta + step
        if np.max(np.abs(step)) < 1e-10 * (1 + np.max(np.abs(beta))):
            break
    else:
        raise ValueError("arrhenius_fit: Newton's method did not converge")
    mu = e * np.exp(X @ beta)
    with np.errstate(divide="ignore", invalid="ignore"):
        dev = float(2 * np.sum(np.where(y > 0, y * np.log(y / mu), 0.0) - (y - mu)))
    dof = len(x) - 2
    scale = max(1.0, dev / dof) if quasi and dof > 0 else 1.0
    cov = np.linalg.inv(X.T @ (mu[:, None] * X)) * scale
    c, b = float(beta[0]), float(beta[1])
    a = c + b * x0
    var_a = cov[0, 0] + x0 * x0 * cov[1, 1] + 2 * x0 * cov[0, 1]
    z = sps.norm.ppf((1 + level) / 2)
    return {
        "a": a,
        "a_low": a - z * np.sqrt(var_a),
        "a_high": a + z * np.sqrt(var_a),
        "b": b,
        "b_low": b - z * np.sqrt(cov[1, 1]),
        "b_high": b + z * np.sqrt(cov[1, 1]),
        "deviance": dev,
        "dof": dof,
        "p_value": float(sps.chi2.sf(dev, dof)) if dof > 0 else float("nan"),
        "points": len(x),
        "scale": scale,
        "log_k": lambda inv: a - b * np.asarray(inv, float),
        "log_k_interval": lambda inv: _wald_line(c, b, x0, cov, np.asarray(inv, float), z),
    }


def _wald_line(c, b, x0, cov, inv, z):
    """(low, high) of c - b (inv - x0) from the covariance of (c, b)."""
    u = -(inv - x0)
    se = np.sqrt(cov[0, 0] + u * u * cov[1, 1] + 2 * u * cov[0, 1])
    mid = c + b * u
    return mid - z * se, mid + z * se


def restart_time(cost, success, level: float = 0.95) -> tuple[float, float, float]:
    """Expected steps to success when every failed attempt restarts from the same start (renewal).

    ``cost`` (N,) steps each independent attempt used (its first-passage step if it succeeded; else the
    step it diverged or the horizon), ``success`` (N,) bool. The expected total is E[cost] / P(success)
    (Wald's identity); the interval is the delta method on the log of the ratio of sums. For a
    memoryless escape at rate k with a competing divergence, the answer is 1 / k whatever the horizon.
    No success gives (inf, sum(cost) / upper bound of the successes, inf)."""
    c = np.asarray(cost, float)
    s = np.asarray(success, bool).astype(float)
    n, k = len(c), float(s.sum())
    if k == 0:
        hi = proportion_ci(0, n, level)[1] * n
        return float("inf"), float(c.sum() / hi) if hi > 0 else float("nan"), float("inf")
    r = c.sum() / k
    se_log = np.sqrt(np.sum((c - r * s) ** 2)) / (r * k)
    z = sps.norm.ppf((1 + level) / 2)
    return float(r), float(r * np.exp(-z * se_log)), float(r * np.exp(z * se_log))
