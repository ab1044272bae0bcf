"""(t) Which law: the escape curves against the forms the theories of SGD escape predict, and whether escapes
are a Poisson process (first-passage times against the exponential law)."""

from __future__ import annotations

from pathlib import Path
from typing import NamedTuple

import numpy as np
import pandas as pd

from jumpsim import stats

import suite
from .fmt import NotRun
from analysis import configs_with_runs, first_passage_times

RANGES = (
    0.05,
    0.5,
)  # the learning rates a curve's fits use: fewer than 5 % diverged (as (j)), fewer than 50 % (as (s))
BURN_IN = 5_000  # the Poisson test again from this step
FORMS = ("arrhenius", "power", "two_channel")
POISSON = ("r_sampling", "s_batch2", "s_batch3", "s_batch4")  # the CPU datasets whose first-passage times are tested
KS_MAX_DIVERGED = 0.05  # the KS test only where divergence (which censors) is rare
MIN_ESCAPES = 20
LABELS = {"arrhenius": "Arrhenius", "power": "power law", "two_channel": "two channels"}
SMALL_CURVE = "(j) ridge 0.001"  # the curve whose start (i) ran from at small eta


class TFacts(NamedTuple):
    laws: list[dict]  # per curve: its name, learning rates, stats.escape_laws
    poisson: pd.DataFrame  # per config: stats.exponential_test of its first-passage times, with eta, B, sampling
    small: list[dict] = []  # per law of SMALL_CURVE and small-eta bound of (i): the law's k there against the bound


def fit_laws(curves: dict[str, pd.DataFrame]) -> list[dict]:
    """Per curve and divergence limit of RANGES: its name, the limit, the learning rates used and
    stats.escape_laws of its counts (curves with fewer than 3 learning rates or 2 with escapes are left out).
    ``curves``: name -> escape_rows of one escape curve."""
    laws = []
    for limit in RANGES:
        for name, g in curves.items():
            g = g[g.diverged / g.seeds < limit].sort_values("eta")
            if len(g) >= 3 and (g["count"] > 0).sum() >= 2:
                fits = stats.escape_laws(g.eta, g["count"], g.exposure)
                laws.append({"curve": name, "limit": limit, "etas": g.eta.tolist(), "fits": fits})
    return laws


def small_eta(laws: list[dict], bounds: list[dict]) -> list[dict]:
    """Each law fitted to SMALL_CURVE, extrapolated to the learning rates where (i) bounds the rate from above
    (``bounds``: i_small_eta's, the rate form's k_bound): its k there, and whether it exceeds the bound (the
    law is then rejected there at the bound's level, 95 %)."""
    rows = []
    for b in sorted((b for b in bounds if b["k_bound"] == b["k_bound"]), key=lambda b: -b["eta"]):
        for law in (x for x in laws if x["curve"] == SMALL_CURVE):
            for form in FORMS:
                if form in law["fits"]:
                    k = float(stats.law_rate(form, law["fits"][form]["params"], b["eta"]))
                    rows.append({"eta": b["eta"], "k_bound": b["k_bound"], "limit": law["limit"], "form": form}
                                | {"k": k, "above": k > b["k_bound"]})  # fmt: skip
    return rows


def compute(out: Path, curves: dict[str, pd.DataFrame], bounds: list[dict] = ()) -> TFacts | NotRun:
    """``curves``: name -> escape_rows of one escape curve (the ridges of (j), depth 4 of (p), B = 2, 3, 4 of (s),
    without replacement of (r)); ``bounds``: (i)'s upper bounds at small eta (``small_eta``). Not run without the
    datasets whose first-passage times it tests."""
    if all(suite.load(out, name) is None for name in POISSON):
        return NotRun("t_laws", how="the experiments r_sampling and s_batch2-4")
    laws = fit_laws(curves)
    rows = []
    for name in POISSON:
        data = suite.load(out, name)
        if data is None or data["runs"].empty:
            continue
        for cid, cfg, rr in configs_with_runs(data):
            t, reached, horizon = first_passage_times(data, cid)
            div = float((rr.status == "diverged").mean())
            if reached.sum() < MIN_ESCAPES:
                continue
            train = cfg["train"]
            sampling = train.get("sampling", "with_replacement")
            for burn in (0, BURN_IN):
                res = stats.exponential_test(t, reached, horizon, burn_in=burn)
                if div >= KS_MAX_DIVERGED:
                    res["ks_p"] = float("nan")
                rows.append(
                    {"experiment": name, "eta": float(train["lr"]), "batch": train["batch"], "sampling": sampling}
                    | {"diverged": div, "burn_in": burn, **res}
                )
    if not laws and not rows:
        return NotRun("t_laws", how="the curves of (j), (p), (r) or (s)")
    return TFacts(laws, pd.DataFrame(rows), small_eta(laws, list(bounds)))


def render(t: TFacts | NotRun) -> list[str]:
    head = ["## (t) Which law: the escape curves against the theories' forms", ""]
    if isinstance(t, NotRun):
        return head + t.lines()
    lines = head + [
        "Every escape curve above, fitted by Poisson regression of the first-escape counts on the steps before them, "
        "in three forms: Arrhenius, log k = a - b / eta (diffusion / Kramers escape and large deviations of SGD: b a "
        "barrier over the noise scale, proportional to B); power law, log k = a + c log eta (heavy-tailed, "
        "Levy-driven escape); two channels, k = exp(a1 - b1 / eta) + exp(a2 - b2 / eta) (one mechanism taking over "
        "from another). The goodness-of-fit p is the deviance's chi-square tail (small: rejected); dAIC is the "
        "form's AIC over the best one's. Each curve twice: over the learning rates where fewer than 5 % of the seeds "
        "diverged (divergence does not compete with escape there) and where fewer than 50 % did (the whole "
        "countable range).",
        "",
        "| curve | diverged | learning rates | Arrhenius b [95 %], p, dAIC | power c [95 %], p, dAIC | two channels "
        "b1, b2 (crossing eta), p, dAIC | best (AIC) |",
        "|---|---|---|---|---|---|---|",
    ]
    for law in t.laws:
        f = law["fits"]
        best = f[f["best"]]["aic"]
        cells = []
        for form in FORMS:
            if form not in f:
                cells.append("- (too few points)")
                continue
            x, d = f[form], f[form]["aic"] - best
            if form == "two_channel":
                q = x["params"]
                cells.append(f"{q['b1']:.1f}, {q['b2']:.1f} ({q['eta_cross']:.3g}), p = {x['p_value']:.2g}, {d:.1f}")
            else:
                q = x["params"]
                cells.append(
                    f"{q['slope']:.2f} [{q['slope_low']:.2f}, {q['slope_high']:.2f}], p = {x['p_value']:.2g}, {d:.1f}"
                )
        etas = f"{min(law['etas']):g}-{max(law['etas']):g} ({len(law['etas'])})"
        lines.append(
            f"| {law['curve']} | < {int(100 * law['limit'])} % | {etas} | "
            + " | ".join(cells)
            + f" | {f['best'].replace('_', ' ')} |"
        )
    for limit in RANGES:
        lines += [
            "",
            f"Fewer than {int(100 * limit)} % diverged: " + _verdict([x for x in t.laws if x["limit"] == limit]),
        ]
    lines += ["", *_small_lines(t.small)] if t.small else [""]
    if len(t.poisson):
        lines += [
            "**Are escapes a Poisson process?** Per configuration of the CPU runs with at least "
            f"{MIN_ESCAPES} escapes: the escape times given an escape within T against the truncated exponential of "
            "the fitted rate (Kolmogorov-Smirnov; only where fewer than 5 % diverge, since divergence censors), and "
            "the rate in the second half of the run over the first (exact conditional interval; a rising hazard, "
            "e.g. a relaxation away from the start before escapes begin, puts it above 1); then again from step "
            f"{BURN_IN:,} (escapes before it left out, the halves those of the rest).",
            "",
            "| experiment | B | sampling | eta | from step | escapes | KS p | late / early rate [95 %] | "
            "p (equal halves) |",
            "|---|---|---|---|---|---|---|---|---|",
        ]
        for q in t.poisson.sort_values(["experiment", "sampling", "eta", "burn_in"]).itertuples():
            ks = "-" if np.isnan(q.ks_p) else f"{q.ks_p:.2g}"
            lines.append(
                f"| {q.experiment} | {q.batch} | {q.sampling.replace('_', ' ')} | {q.eta:g} | {q.burn_in:,} | "
                f"{q.count} | {ks} | {q.late_over_early:.2f} [{q.late_low:.2f}, {q.late_high:.2f}] | {q.halves_p:.2g} |"
            )
        for burn in (0, BURN_IN):
            lines += ["", f"From step {burn:,}: " + _poisson_verdict(t.poisson[t.poisson.burn_in == burn])]
        lines += [""]
    return lines


def _spread(small: pd.DataFrame) -> float:
    """How far apart, in decades, the laws' extrapolations are at the learning rate where they differ most."""
    by = small.groupby("eta").k
    return float(np.log10(by.max() / by.min()).max())


def _small_lines(small: list[dict]) -> list[str]:
    """The laws of SMALL_CURVE extrapolated to (i)'s small learning rates, against (i)'s bounds on k."""
    df = pd.DataFrame(small)
    lines = [
        f"Below the fitted range: each law fitted to {SMALL_CURVE}, extrapolated to the learning rates of (i) where "
        "no escape was seen and the rate form bounds k from above (the 95 % upper end of its level bound):",
        "",
        "| eta | bound on k (i) | fitted where | " + " | ".join(LABELS[f] for f in FORMS) + " |",
        "|---|---|---|" + "---|" * len(FORMS),
    ]
    for (eta, limit), g in df.groupby(["eta", "limit"], sort=False):
        cell = {r.form: f"{r.k:.2g}" + (" (above: rejected)" if r.above else "") for r in g.itertuples()}
        lines.append(
            f"| {eta:g} | {g.k_bound.iloc[0]:.2g} | < {int(100 * limit)} % diverged | "
            + " | ".join(cell.get(f, "-") for f in FORMS)
            + " |"
        )
    above = list(df[df.above].itertuples())
    verdict = (
        "every extrapolation lies below the bounds: at these learning rates the bounds reject no law (the "
        f"extrapolations differ by up to {_spread(df):.0f} "
        "decades, so the laws disagree where nothing is measured)"
        if not above
        else "above the bound, so rejected there: "
        + ", ".join(sorted({f"{LABELS[r.form]} (< {int(100 * r.limit)} %, eta {r.eta:g})" for r in above}))
    )
    return lines + ["", verdict[0].upper() + verdict[1:] + ".", ""]


def _verdict(laws: list[dict]) -> str:
    rej = {
        form: [x["curve"] for x in laws if form in x["fits"] and x["fits"][form]["p_value"] < 0.01] for form in FORMS
    }
    best = {}
    for x in laws:
        best.setdefault(x["fits"]["best"], []).append(x["curve"])
    parts = [
        f"{form.replace('_', ' ')} rejected (p < 0.01) for {', '.join(c) if c else 'no curve'}"
        for form, c in rej.items()
    ]
    won = "; ".join(f"{form.replace('_', ' ')} has the smallest AIC for {', '.join(c)}" for form, c in best.items())
    return "; ".join(parts) + ". " + won + "."


def _poisson_verdict(p: pd.DataFrame) -> str:
    ks = p[~p.ks_p.isna()]
    bad_ks = ks[ks.ks_p < 0.01]
    bad_h = p[p.halves_p < 0.01]
    up = bad_h[bad_h.late_over_early > 1]
    return (
        f"The exponential law is rejected (KS p < 0.01) for {len(bad_ks)} of {len(ks)} configurations tested, equal "
        f"halves for {len(bad_h)} of {len(p)} ({len(up)} with a higher late rate)"
        + (
            ": a rate per step summarizes these runs."
            if len(bad_ks) + len(bad_h) == 0
            else ": where rejected, the rate per step is an average over a hazard that changes along the run."
        )
    )


def theories(r, s, t) -> list[str]:
    """What the theories predict against what (r), (s) and (t) measured, one row each, from their facts (NotRun
    where missing)."""
    rows = []
    if not isinstance(t, NotRun) and t.laws:
        strict = [x for x in t.laws if x["limit"] == RANGES[0]]
        wide = [x for x in t.laws if x["limit"] == RANGES[-1] and len(x["etas"]) >= 6]
        n_rej = lambda laws, form: sum(form in x["fits"] and x["fits"][form]["p_value"] < 0.01 for x in laws)  # noqa: E731
        rows.append(
            (
                "diffusion / Kramers, large deviations: log k = a - b / eta (Arrhenius)",
                f"where < 5 % diverge: rejected for {n_rej(strict, 'arrhenius')} of {len(strict)} curves (5-6 learning "
                f"rates each); over the countable range (>= 6 rates, < 50 % diverge): rejected for "
                f"{n_rej(wide, 'arrhenius')} of {len(wide)}",
            )
        )
        rows.append(
            (
                "heavy-tailed (Levy) escape: log k = a + c log eta (power law)",
                f"where < 5 % diverge: rejected for {n_rej(strict, 'power')} of {len(strict)}; over the countable "
                f"range: rejected for {n_rej(wide, 'power')} of {len(wide)}; on 5-6 learning rates a power law and "
                "Arrhenius are not told apart",
            )
        )
        two = [x for x in strict if "two_channel" in x["fits"] and x["fits"]["best"] == "two_channel"]
        rows.append(
            (
                "two channels (a one-step collapse dying out, a slower one taking over)",
                "smallest AIC for "
                + (
                    ", ".join(
                        f"{x['curve']} (b1 = {x['fits']['two_channel']['params']['b1']:.1f}, b2 = "
                        f"{x['fits']['two_channel']['params']['b2']:.1f}, crossing at eta "
                        f"{x['fits']['two_channel']['params']['eta_cross']:.3f})"
                        for x in two
                    )
                    or "no curve"
                )
                + " where < 5 % diverge; 4 parameters on 5-6 points: suggestive, not decisive",
            )
        )
    if not isinstance(s, NotRun):
        ratio = "; ".join(
            f"b_{b} / b_1 = {v[0]:.2f} [{v[1]:.2f}, {v[2]:.2f}] (predicted {b})" for b, v in s.ratios.items()
        )
        rows.append(("the same theories: slope b proportional to B (b_B / b_1 = B)", ratio or "-"))
        if s.joint:
            j = s.joint
            rows.append(
                (
                    "k a function of B / eta (one slope c in B / eta)",
                    f"c = {j['c']:.2f} [{j['low']:.2f}, {j['high']:.2f}]; against a slope per B p = {j['p_value']:.2g}"
                    + (" (rejected)" if j["p_value"] < 0.01 else " (not rejected)"),
                )
            )
    if not isinstance(r, NotRun) and r.ratios:
        lo = min(x["ratio"] for x in r.ratios)
        hi = max(x["ratio"] for x in r.ratios)
        rows.append(
            (
                "the paper's analysis (with replacement) vs sampling without replacement",
                f"without replacement escapes {1 / hi:.2g}-{1 / lo:.2g}x less often at eta "
                f"{min(x['eta'] for x in r.ratios):g}-{max(x['eta'] for x in r.ratios):g}",
            )
        )
    if not isinstance(t, NotRun) and t.small:
        small = pd.DataFrame(t.small)
        above = small[small.above]
        rows.append(
            (
                f"the laws below the fitted range (eta {', '.join(f'{e:g}' for e in sorted(set(small.eta)))})",
                f"(i)'s upper bounds on k reject {len(above.groupby(['form', 'limit']))} of "
                f"{len(small.groupby(['form', 'limit']))} fitted laws; the laws' predictions there differ by up to "
                f"{_spread(small):.0f} decades",
            )
        )
    if not isinstance(t, NotRun) and len(t.poisson):
        p0, p1 = (t.poisson[t.poisson.burn_in == b] for b in (0, BURN_IN))
        rows.append(
            (
                "a rate per step (escapes a Poisson process)",
                f"from the start: equal halves rejected for {int((p0.halves_p < 0.01).sum())} of {len(p0)} runs (the "
                f"hazard rises); from step {BURN_IN:,}: for {int((p1.halves_p < 0.01).sum())} of {len(p1)}, KS for "
                f"{int((p1.ks_p < 0.01).sum())} of {int(p1.ks_p.notna().sum())}",
            )
        )
    if not rows:
        return []
    return (
        ["### What the theories predict, what we measured", "", "| prediction | measured |", "|---|---|"]
        + [f"| {a} | {b} |" for a, b in rows]
        + [""]
    )
