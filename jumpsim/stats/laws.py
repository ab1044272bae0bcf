"""Laws and recipes fitted to jump counts: the Arrhenius form of the escape rate against the learning rate,
and the expected time to success of restarting attempts."""

from __future__ import annotations

import numpy as np
from scipy import stats as sps
from scipy.optimize import minimize
from scipy.special import gammaln

from ..intervals import proportion_ci
from .brute import rate_ratio


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
    if len(np.unique(x[y > 0])) < 2:
        # with jumps at one learning rate only, the likelihood keeps rising as b -> +-inf: no fit exists
        raise ValueError("arrhenius_fit needs jumps at two or more learning rates")
    x0 = float(x.mean())
    X = np.column_stack([np.ones_like(x), -(x - x0)])  # log k = c - b (x - x0)
    g = poisson_glm(X, y, exposure, quasi=quasi)
    beta, cov, dev, dof, scale = g["beta"], g["cov"], g["deviance"], g["dof"], g["scale"]
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
        "p_value": g["p_value"],
        "points": len(x),
        "scale": scale,
        "log_k": lambda inv: a - b * np.asarray(inv, float),
        "log_k_interval": lambda inv: _wald_line(c, b, x0, cov, np.asarray(inv, float), z),
    }


def poisson_glm(X, counts, exposure, quasi: bool = False) -> dict:
    """Poisson regression with log link: counts (P,) ~ Poisson(exposure (P,) x exp(X (P, q) beta)), by Newton's
    method (zero counts take part). Returns ``beta`` (q,), its covariance ``cov`` (observed information; with
    ``quasi`` scaled by max(1, deviance / dof), ``scale``), the ``deviance`` on ``dof`` = P - q degrees of freedom
    with its chi-square tail ``p_value``, and ``aic`` (2 q + 2 x negative log-likelihood)."""
    X, y, e = np.asarray(X, float), np.asarray(counts, float), np.asarray(exposure, float)
    beta = np.zeros(X.shape[1])
    beta[0] = np.log(max(y.sum(), 0.5) / e.sum()) if np.allclose(X[:, 0], 1) else 0.0
    for _ in range(200):
        mu = e * np.exp(X @ beta)
        info = X.T @ (mu[:, None] * X)
        step = np.linalg.solve(info, X.T @ (y - mu))
        beta = beta + step
        if np.max(np.abs(step)) < 1e-10 * (1 + np.max(np.abs(beta))):
            break
    else:
        raise ValueError("poisson_glm: Newton's method did not converge")
    mu = e * np.exp(X @ beta)
    dev = _deviance(y, mu)
    dof = len(y) - X.shape[1]
    scale = max(1.0, dev / dof) if quasi and dof > 0 else 1.0
    return {
        "beta": beta,
        "cov": np.linalg.inv(X.T @ (mu[:, None] * X)) * scale,
        "deviance": dev,
        "dof": dof,
        "p_value": _fit_p(dev, dof),
        "scale": scale,
        "aic": 2 * X.shape[1] + 2 * _neg_log_lik(y, mu),
    }


def _fit_p(dev: float, dof: int) -> float:
    """Goodness of fit: the deviance's chi-square tail on ``dof`` degrees of freedom (NaN without any)."""
    return float(sps.chi2.sf(dev, dof)) if dof > 0 else float("nan")


def _deviance(y, mu) -> float:
    with np.errstate(divide="ignore", invalid="ignore"):
        return float(2 * np.sum(np.where(y > 0, y * np.log(y / mu), 0.0) - (y - mu)))


def _neg_log_lik(y, mu) -> float:
    with np.errstate(divide="ignore", invalid="ignore"):
        return float(np.sum(mu - np.where(y > 0, y * np.log(mu), 0.0) + gammaln(y + 1)))


def escape_laws(eta, counts, exposure) -> dict:
    """The escape rate k(eta) under the forms the theories of SGD escape predict, each fitted to Poisson counts
    (P,) seen over ``exposure`` (P,) steps at learning rates ``eta`` (P,):

    - "arrhenius": log k = a - b / eta (diffusion / Kramers, large deviations: b is a barrier over the noise scale);
    - "power": log k = a + c log eta (heavy-tailed, Levy-driven escape: polynomial in eta);
    - "two_channel": k = exp(a1 - b1 / eta) + exp(a2 - b2 / eta) (two mechanisms, one taking over from the other).

    Each: its parameters (``params``; b and c with Wald 95 % intervals for the linear forms, widened by the scatter
    the form does not explain, as ``arrhenius_fit(quasi=True)``), ``deviance``, ``dof``,
    goodness-of-fit ``p_value`` and ``aic``; "best" names the form of smallest AIC. A form with fewer points than
    parameters + 1 is left out."""
    eta, y, e = (np.asarray(v, float) for v in (eta, counts, exposure))
    out, z = {}, sps.norm.ppf(0.975)
    for name, x in (("arrhenius", -1 / eta), ("power", np.log(eta))):
        if len(eta) < 3 or len(np.unique(x[y > 0])) < 2:
            continue
        x0 = float(x.mean())
        g = poisson_glm(np.column_stack([np.ones_like(x), x - x0]), y, e, quasi=True)
        slope, se = float(g["beta"][1]), float(np.sqrt(g["cov"][1, 1]))
        a = float(g["beta"][0] - slope * x0)
        out[name] = {**g, "params": {"a": a, "slope": slope, "slope_low": slope - z * se, "slope_high": slope + z * se}}
    if len(eta) >= 5 and len(np.unique(eta[y > 0])) >= 4:
        out["two_channel"] = _two_channel(eta, y, e)
    if out:
        out["best"] = min((k for k in out), key=lambda k: out[k]["aic"])
    return out


def law_rate(form: str, params: dict, eta) -> np.ndarray:
    """k(eta) of an ``escape_laws`` form from its ``params``: what the fitted law predicts where it was not fitted
    (an extrapolation, to set against a bound measured there)."""
    eta = np.asarray(eta, float)
    if form == "arrhenius":
        return np.exp(params["a"] - params["slope"] / eta)
    if form == "power":
        return np.exp(params["a"] + params["slope"] * np.log(eta))
    if form == "two_channel":
        return np.exp(params["a1"] - params["b1"] / eta) + np.exp(params["a2"] - params["b2"] / eta)
    raise ValueError(f"unknown form {form!r}: arrhenius, power or two_channel")


def _two_channel(eta, y, e) -> dict:
    """Maximum-likelihood k = exp(a1 - b1 / eta) + exp(a2 - b2 / eta), from starts made of Arrhenius lines through
    the low and the high learning rates (every split point); channel 1 the steeper (b1 >= b2)."""
    inv = 1 / eta

    def nll(th):
        k1, k2 = np.exp(th[0] - th[1] * inv), np.exp(th[2] - th[3] * inv)
        mu = np.maximum(e * (k1 + k2), 1e-300)
        r = 1 - y / mu  # d nll / d mu
        g = np.array([np.sum(r * e * k1), -np.sum(r * e * k1 * inv), np.sum(r * e * k2), -np.sum(r * e * k2 * inv)])
        return _neg_log_lik(y, mu), g

    best = None
    bounds = [(None, None), (0, None)] * 2  # barriers b1, b2 >= 0: a rate that falls as eta grows is no channel
    order = np.argsort(eta)
    for cut in range(2, len(eta) - 1):
        lo, hi = order[:cut], order[cut:]
        starts = []
        for part in (lo, hi):
            rate = (y[part] + 0.5) / e[part]
            b, a = np.polyfit(-inv[part], np.log(rate), 1)
            starts += [a, max(b, 0.0)]
        with np.errstate(all="ignore"):  # the line search may try steps whose rates overflow: it backs off
            r = minimize(nll, np.asarray(starts, float), jac=True, method="L-BFGS-B", bounds=bounds)
        if best is None or r.fun < best.fun:
            best = r
    a1, b1, a2, b2 = best.x
    if b1 < b2:
        a1, b1, a2, b2 = a2, b2, a1, b1
    mu = e * (np.exp(a1 - b1 * inv) + np.exp(a2 - b2 * inv))
    dev, dof = _deviance(y, mu), len(y) - 4
    return {
        "params": {"a1": a1, "b1": b1, "a2": a2, "b2": b2, "eta_cross": (b1 - b2) / (a1 - a2) if a1 != a2 else np.nan},
        "deviance": dev,
        "dof": dof,
        "p_value": _fit_p(dev, dof),
        "aic": 8 + 2 * _neg_log_lik(y, mu),
    }


def exponential_test(times, reached, horizon: float, burn_in: float = 0.0) -> dict:
    """Are first-passage times those of a constant hazard (a Poisson process of escapes)?

    ``times`` (N,): each seed's first-passage step if ``reached`` (N,) bool, else the step its run ended (horizon or
    divergence: censored). With rate k = count / exposure (steps from ``burn_in``), the reached times given
    reaching before ``horizon`` follow the truncated exponential (1 - e^{-k t}) / (1 - e^{-k T}) (t from the
    burn-in): Kolmogorov-Smirnov ``ks_p`` (k estimated: slightly conservative; only the seeds that ran to the
    horizon or escaped take part, so censoring by divergence does not bias it). And the hazard of the second half
    against the first (``late_over_early``, exact conditional interval, ``halves_p``), which a rising or falling
    hazard shows. Seeds that escaped before ``burn_in`` are left out."""
    t = np.asarray(times, float) - burn_in
    r = np.asarray(reached, bool)
    keep = t >= 0
    t, r = t[keep], r[keep]
    span = horizon - burn_in
    k = r.sum() / t.sum() if t.sum() > 0 else float("nan")
    full = r | (t >= span)
    hit = np.sort(t[r & full])
    ks_p = float("nan")
    if len(hit) >= 5 and k > 0:
        cdf = lambda x: -np.expm1(-k * np.asarray(x)) / -np.expm1(-k * span)  # noqa: E731
        ks_p = float(sps.kstest(hit, cdf).pvalue)
    half = span / 2
    c1, c2 = int((r & (t < half)).sum()), int((r & (t >= half)).sum())
    e1, e2 = float(np.minimum(t, half).sum()), float(np.clip(t - half, 0, None).sum())
    rr = (
        rate_ratio(c2, e2, c1, e1)
        if e1 > 0 and e2 > 0
        else {"ratio": np.nan, "low": np.nan, "high": np.nan, "p_value": np.nan}
    )
    return {
        "count": int(r.sum()),
        "rate": float(k),
        "ks_p": ks_p,
        "early": c1,
        "late": c2,
        "late_over_early": rr["ratio"],
        "late_low": rr["low"],
        "late_high": rr["high"],
        "halves_p": rr["p_value"],
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
