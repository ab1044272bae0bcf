"""The table at the top: what the paper claims, what the sections below measured, agreement."""

from __future__ import annotations

import numpy as np

from .a_gd_stuck import AFacts
from .fmt import NotRun
from .j_curve import JFacts, base_fit
from .k_recipe import KFacts
from .m_depth4_search import MFacts
from .n_one_way import NFacts
from .p_depth4_curve import PFacts

Claim = tuple[str, str, str]  # the paper claims, we measured, agreement


def compute(
    a: AFacts, j: JFacts | NotRun, n: NFacts, m: MFacts | NotRun, p: PFacts | NotRun, k: KFacts | NotRun
) -> list[Claim]:
    """The rows of the table, from the sections' facts (a claim whose sections did not run is left out)."""
    rows = []
    if not isinstance(a.gd, NotRun):
        g = a.gd
        rows.append(
            (
                "GD can get stuck at minima of rank above the true one",
                f"(a) {g.above}/{g.n} GD runs end above r* = {g.rstar}",
                "yes" if g.above > 0 else "not seen here",
            )
        )
    if not isinstance(j, NotRun):
        rows += _escape(j)
    if n.by_eta or n.kick is not None:
        rows += _one_way(n)
    if not isinstance(m, NotRun):
        rows.append(_depth(m, p))
    if not isinstance(k, NotRun) and len(k.rows):
        rows.append(_recipe(k, base_fit(j)))
    return rows


def _escape(j: JFacts) -> list[Claim]:
    cv = j.curve
    r13 = cv[(cv.ridge == 1e-3) & (cv.eta == 0.13)]
    hits = cv[(cv.reached > 0)].sort_values("eta")
    low = hits.iloc[0] if len(hits) else None
    if low is None:
        what = f"(j) no escape in {int(cv.seeds.sum()):,} seeds"
    else:
        what = (
            f"(j) from the rank-3 minimum, P(rank <= 2 within {int(cv.horizon.max()):,}) = {low.p:.2g} at eta "
            f"{low.eta:g} (ridge {low.ridge:g}), the lowest eta with an escape in {int(low.seeds):,} seeds"
        )
    if len(r13):
        what += f"; {r13.p.iloc[0]:.2g} at eta 0.13"
    rows = [
        (
            "SGD jumps from a higher-rank minimum to a lower-rank one with non-zero probability",
            what,
            "yes" if low is not None else "not seen",
        )
    ]
    fits = j.fits
    if fits:
        parts = [
            f"ridge {r:g}: b = {f['fit']['b']:.1f} [{f['fit']['b_low']:.1f}, {f['fit']['b_high']:.1f}], "
            f"fit p = {f['fit']['p_value']:.2g}"
            for r, f in fits.items()
        ]
        ok = [f["fit"]["p_value"] >= 0.01 for f in fits.values()]
        rows.append(
            (
                "The jump probability is small for small eta (noise too weak to escape)",
                "(j) rate k against 1/eta, Arrhenius fit log k = a - b/eta where < 5 % diverge: " + "; ".join(parts),
                "yes; the Arrhenius form fits " + f"{sum(ok)} of {len(ok)} ridges (p >= 0.01)",
            )
        )
    return rows


def _one_way(n: NFacts) -> list[Claim]:
    rows = []
    small = min(n.by_eta, default=None)
    kick = n.kick
    if small is not None:
        s = n.by_eta[small]
        what = (
            f"(n) from the rank-2 minimum at eta {small:g}: {s['up']} up-jumps in {s['exposure']:,} steps "
            f"(< {s['up_high']:.2g} per step), {s['exits']} exits from B_2"
        )
        verdict = "yes, from a minimum" if s["up"] == 0 and s["exits"] == 0 else "NO"
        if kick is not None:
            what += (
                f"; after an eta = 0.14 kick, at eta 0.05: {kick.up_small} up-jumps in {kick.exp_small:,} "
                f"steps at rank 2 and {kick.small_exits} exits from B_2, from states the kick left near tau"
            )
            if kick.up_small or kick.small_exits:
                verdict += "; not for states left near the threshold by a kick (they cross back and forth)"
        rows.append(("No jump back up: B_r is absorbing for small eta and ridge", what, verdict))
    if kick is not None:
        rows.append(
            (
                "(not claimed) up-jumps at large eta",
                f"(n) during an eta = 0.14 kick: {kick.up_kick} up-jumps out of rank 2 in {kick.exp_kick:,} steps",
                "the claim's small-eta condition matters",
            )
        )
    return rows


def _depth(mf: MFacts, p: PFacts | NotRun) -> Claim:
    m = mf.rows
    found = int((m.stuck_above > 0).sum())
    what = f"(m) depth-4 GD stops above r* on {found} of {len(m)} problems searched"
    verdict = "depth 4 removes the stuck minimum here" if found == 0 else "depth-4 minima above r* exist"
    ratios = [] if isinstance(p, NotRun) else p.ratios
    both = [q for q in ratios if q["count_4"] > 0 and q["count_3"] > 0]
    if both:
        q = min(both, key=lambda q: q["high"] / q["low"])
        what += (
            f"; (p) at eta {q['eta']:g} the depth-4 escape rate is {q['ratio']:.3g}x depth 3's "
            f"[{q['low']:.3g}, {q['high']:.3g}]"
        )
        verdict = "depth raises the rate at equal eta" if q["low"] > 1 else "no depth effect resolved"
    return ("Deeper networks: more local minima, possibly a stronger low-rank bias", what, verdict)


def _recipe(k: KFacts, fit: dict | None) -> Claim:
    b = k.rows.iloc[0]
    return (
        "Recipe: small ridge to reach at least the right rank, then SGD noise to find lower-rank minima",
        f"(k) fastest of {len(k.rows)} schedules: lr {b.lr}, ridge {b.ridge}: {b.steps:,.0f} steps "
        f"[{b.steps_low:,.0f}, {b.steps_high:,.0f}] to rank 2 with restarts",
        "works only with eta near the edge of divergence"
        + (
            f"; at a constant eta 0.10 the fit of (j) extrapolates {np.exp(-fit['log_k'](10.0)):.2g} steps"
            if fit is not None
            else ""
        ),
    )


def render(rows: list[Claim]) -> list[str]:
    if not rows:
        return []
    lines = [
        "## The paper's claims against what we measured",
        "",
        "| the paper claims | we measured | agreement |",
        "|---|---|---|",
    ]
    lines += [f"| {c} | {w} | {g} |" for c, w, g in rows]
    return lines + [""]


def escape_law(r, s, t, u, v, w, y=None) -> list[Claim]:
    """The rows the escape-law sections (r)-(y) add (their facts; NotRun ones are left out)."""
    rows = []
    if not isinstance(s, NotRun) and s.ratios:
        b, (x, lo, hi) = max(s.ratios.items())
        rows.append(
            (
                "(theories of SGD escape) log k = a - c B / eta: the slope in 1 / eta grows in proportion to the batch",
                f"(s) slope b_{b} / b_1 = {x:.2f} [{lo:.2f}, {hi:.2f}] (predicted {b})"
                + (f"; one slope in B / eta: p = {s.joint['p_value']:.2g}" if s.joint else ""),
                "no" if hi < b else "not rejected",
            )
        )
    if not isinstance(r, NotRun) and r.ratios:
        top = max(x["high"] for x in r.ratios)
        rows.append(
            (
                "(not claimed) sampling without replacement escapes like SGD with replacement",
                f"(r) rate without / with replacement {min(x['ratio'] for x in r.ratios):.2g}-"
                f"{max(x['ratio'] for x in r.ratios):.2g} at eta {min(x['eta'] for x in r.ratios):g}-"
                f"{max(x['eta'] for x in r.ratios):g}",
                "no: fewer escapes without replacement" if top < 1 else "not everywhere",
            )
        )
    if not isinstance(u, NotRun) and u.up:
        cells = "; ".join(f"{x['optimizer']}: {x['up']} up-jumps in {x['exposure']:,} steps at rank 2" for x in u.up)
        rows.append(
            (
                "No jump back up (for SGD), under momentum and Adam",
                f"(u) from the rank-2 minimum {cells}",
                "holds for momentum, not for Adam"
                if any(x["up"] > 0 for x in u.up if x["optimizer"] == "adam")
                else "holds",
            )
        )
    if not isinstance(v, NotRun):
        stuck = v.cells[(v.cells.start_rank > 2) & (v.cells.lr <= 0.11)]
        rows.append(
            (
                "The jump probability is small for small eta, at every ridge",
                f"(v) from GD-stuck minima over lambda {v.cells.ridge.min():g}-{v.cells.ridge.max():g}: escapes within "
                f"{v.steps:,} steps in {int((stuck.escaped > 0).sum())} of {len(stuck)} cells at eta <= 0.11",
                "yes: none at small eta" if (stuck.escaped == 0).all() else "escapes seen at small eta",
            )
        )
    if not isinstance(w, NotRun) and len(w.time):
        sl = [q for q in w.time.itertuples() if q.ratio is not None and q.ratio["high"] < 1]
        rows.append(
            (
                "(open question) rank against time: does a step's rate depend on the rank it leaves?",
                f"(w) from a rank-4 minimum: 3 -> 2 slower than 4 -> 3 at {len(sl)} of {len(w.time)} learning rates "
                f"(ratio {min(q.ratio['ratio'] for q in sl):.2g}-{max(q.ratio['ratio'] for q in sl):.2g})"
                if sl
                else "(w) from a rank-4 minimum: no learning rate with jumps 4 -> 3 and 3 -> 2 to compare",
                "yes: slower from rank 3" if sl else "-",
            )
        )
    if not isinstance(t, NotRun) and len(t.poisson):
        p1 = t.poisson[t.poisson.burn_in == max(t.poisson.burn_in)]
        p0 = t.poisson[t.poisson.burn_in == 0]
        rows.append(
            (
                "(implicit) a constant jump rate per step",
                f"(t) hazard rising over the first steps in {int((p0.halves_p < 0.01).sum())} of {len(p0)} runs; after "
                f"{int(max(t.poisson.burn_in)):,} steps equal halves rejected in {int((p1.halves_p < 0.01).sum())} of "
                f"{len(p1)}",
                "after a burn-in",
            )
        )
    if y is not None and not isinstance(y, NotRun):
        both = [(q, y.fitted[q.curve]) for q in y.rows.itertuples() if q.curve in y.fitted]
        if both:
            far = [q.b_path > 10 * fit[0] for q, fit in both]
            rows.append(
                (
                    "(theories of SGD escape) the rate is diffusion over the barrier (b from dF, Hessian, noise)",
                    "(y) fitted b against 2 * integral dF / C with SGD's measured noise along the path: "
                    + "; ".join(f"{q.curve} {fit[0]:.2f} vs {q.b_path:,.3g}" for q, fit in both),
                    "no: escapes jump the saddle (one collapsing step)"
                    if all(far)
                    else (
                        "not rejected"
                        if not any(far)
                        else "depends on the start: far off at "
                        + ", ".join(q.curve for (q, _), f in zip(both, far) if f)
                        + ", within 10x at "
                        + ", ".join(q.curve for (q, _), f in zip(both, far) if not f)
                    ),
                )
            )
    return rows


def splice_rows(text: str, rows: list[Claim]) -> str:
    """``text`` (a REPORT.md) with ``rows`` at the end of the claims table, replacing rows of the same claim."""
    lines = text.split("\n")
    if "## The paper's claims against what we measured" not in lines:
        return text
    a = lines.index("## The paper's claims against what we measured")
    end = next(i for i in range(a + 4, len(lines)) if not lines[i].startswith("|"))
    claims = {c for c, _, _ in rows}
    table = [x for x in lines[a + 4 : end] if x.split(" | ")[0].lstrip("| ") not in claims]
    return "\n".join(lines[: a + 4] + table + [f"| {c} | {m} | {g} |" for c, m, g in rows] + lines[end:])
