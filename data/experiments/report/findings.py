"""Findings: sentences templated from the facts the sections computed (a missing experiment leaves its out)."""

from __future__ import annotations

import json

import numpy as np

from .a_gd_stuck import AFacts
from .b_escape import BFacts
from .c_one_way import CFacts
from .d_depth import DFacts
from .e_phase import EFacts
from .f_schedules import FFacts
from .fmt import NotRun, fmt_hist, fmt_sched, pct
from .g_width_batch import GFacts
from .h_splitting import HFacts
from .i_small_eta import IFacts
from .p_depth4_curve import PFacts
from .q_collapse_hazard import QFacts
from analysis import overlap


def compute(a, b, c, d, e, f, g, h, i, p, q) -> list[str]:
    """The findings of the sections' facts (each argument a section's compute result), in order."""
    found = [
        finding_a(a),
        finding_be(b, e),
        finding_c(c),
        finding_d(d, p),
        finding_f(f, e),
        finding_g(g),
        finding_hi(h, i, q),
    ]
    return [x for x in found if x]


def render(found: list[str]) -> list[str]:
    lines = [
        "## Findings, against the paper's claims",
        "",
        "(Templated from the numbers of the sections below; a missing experiment leaves its finding out.)",
        "",
    ]
    return lines + found + [""]


def finding_a(a: AFacts) -> str | None:
    g, s = a.gd, a.start
    if isinstance(g, NotRun):
        return None
    if g.above == g.n:
        what = f"every one of {g.n} runs from random starts stopped above r* = {g.rstar}"
    else:
        what = f"{g.above} of {g.n} runs from random starts stopped above r* = {g.rstar}"
    sv, r = s["singular_values"], s["rank"]
    return (
        f"- **GD gets stuck** (a): on this problem, full-batch gradient descent ({g.steps:,} steps): {what} (final "
        f"ranks {fmt_hist(g.hist)}). The start file is a critical point of rank {r}: residual gradient "
        f"{s['grad_norm']:.1e}, singular values {sv[r - 1]:.3g} and {sv[r]:.1e} on either side of the threshold "
        f"{s['threshold']:g}."
    )


def finding_be(b: BFacts | NotRun, e: EFacts | NotRun) -> str | None:
    if isinstance(b, NotRun) and isinstance(e, NotRun):
        return None
    parts = []
    if not isinstance(b, NotRun):
        rows = b.rows
        esc, none = rows[rows.k > 0], rows[rows.k == 0]
        if len(esc):
            where = "only where seeds also diverged" if (esc.diverged > 0).all() else "also where no seed diverged"
            parts.append(
                f"from the rank-3 minimum, constant-eta SGD reached rank <= 2 within {b.steps // 1000}k steps "
                f"{where}: "
                + ", ".join(f"at eta {q.lr:g} {q.k}/{q.seeds} seeds ({q.diverged} diverged)" for q in esc.itertuples())
            )
        else:
            parts.append(
                f"from the rank-3 minimum, constant-eta SGD never reached rank <= 2 within {b.steps // 1000}k steps"
            )
        for q in none.itertuples():
            parts.append(f"at eta {q.lr:g} no seed escaped (rate < {q.rate_high:.2g} per step)")
    if not isinstance(e, NotRun):
        ph = e.ph
        quiet = [lr for lr, g in ph.groupby("lr") if (g.p_jump == 0).all()]
        loud = ph[ph.p_jump > 0]
        if quiet:
            parts.append(
                f"in the phase map (e) no cell at eta <= {max(quiet):g} jumped within {e.steps // 1000}k steps"
            )
        if len(loud):
            q = loud.loc[loud.p_jump.idxmax()]
            parts.append(
                f"the most jumps were at eta {q.lr:g}, lambda {q.ridge:g}: P = {q.p_jump:.2f} with "
                f"{pct(q.diverged)} diverged"
            )
    return "- **SGD escapes** (b, e): " + "; ".join(parts) + "."


def finding_c(c: CFacts | NotRun) -> str | None:
    if isinstance(c, NotRun):
        return None
    during = (
        f"during the eta = {c.lr['values'][0]:g} kick the rank went back up {c.up_kick} times"
        if c.up_kick
        else f"no up-jump during the eta = {c.lr['values'][0]:g} kick"
    )
    bounds = ", ".join(f"{int(f)} -> {int(t)} < {h:.2g}" for f, t, h in c.rate_high)
    after = (
        f"after it, at eta = {c.lr['values'][1]:g}, no up-jump in {c.exposure_after:,} seed-steps (rates per "
        f"step {bounds})"
        if c.up_after == 0
        else f"after it, at eta = {c.lr['values'][1]:g}, {c.up_after} up-jumps in {c.exposure_after:,} seed-steps"
    )
    return (
        f"- **One way** (c): {during} (the paper's one-way result is for small eta and lambda); {after}. The kick "
        f"brought {c.p.k}/{c.p.n} seeds to rank <= 2."
    )


def compare_word(diff: dict) -> str:
    """How p_a compares with p_b, from the interval of their difference."""
    return "more often than" if diff["low"] > 0 else "less often than" if diff["high"] < 0 else "about as often as"


def finding_d(d: DFacts | NotRun, p: PFacts | NotRun) -> str | None:
    if isinstance(d, NotRun) or 3 not in d.levels:
        return None
    l3, l2 = d.levels[3], d.levels.get(2)
    word = compare_word(l3["diff"])
    text = (
        f"- **Depth** (d): from random starts at eta {d.lr:g}, depth 4 reached rank r*+1 = 3 {word} depth 3 "
        f"({l3['k4']}/{l3['n4']} vs {l3['k3']}/{l3['n3']}, difference {l3['diff']['difference']:+.2f} "
        f"[{l3['diff']['low']:+.2f}, {l3['diff']['high']:+.2f}]"
        + (f", log-rank p = {l3['logrank']:.2g}" if l3["logrank"] is not None else "")
        + ")"
    )
    if l2 is not None:
        if l2["k3"] == 0 and l2["k4"] == 0:
            text += f"; neither reached r* within {d.steps // 1000}k steps"
        else:
            text += f"; r* reached by {l2['k4']}/{l2['n4']} (depth 4) and {l2['k3']}/{l2['n3']} (depth 3)"
    down = d.down3
    if down and all(q[0] == 0 for q in down.values()):
        text += (
            ". At eta 0.05 no 3 -> 2 jump at either depth ("
            + ", ".join(f"depth {k} < {q[3]:.2g} per step" for k, q in sorted(down.items()))
            + ")"
        )
    ratios = [] if isinstance(p, NotRun) else p.ratios
    if ratios:
        text += (
            "; from each depth's own rank-3 minimum (p), the depth-4 escape rate over depth 3's at equal eta: "
            + ", ".join(f"eta {q['eta']:g}: {q['ratio']:.3g} [{q['low']:.3g}, {q['high']:.3g}]" for q in ratios)
        )
    return text + "."


def finding_f(f: FFacts | NotRun, e: EFacts | NotRun) -> str | None:
    if isinstance(f, NotRun):
        return None
    rows = f.rows
    best = rows.loc[rows.p.idxmax()]
    others = rows.drop(index=best.name)
    clear = len(others) and (best.p_low > others.p_high).all()
    text = (
        f"- **Schedules** (f): lr {fmt_sched(json.loads(best.lr))} and ridge {fmt_sched(json.loads(best.ridge))} "
        f"brought the most seeds to the true rank: {best.k}/{best.n} (next best "
        f"{others.p.max():.3f}{', intervals apart' if clear else ', intervals overlap'})"
    )
    if not isinstance(e, NotRun):
        trends = _phase_trends(e)
        if trends:
            text += "; in the phase map (e) " + "; ".join(trends)
    return text + "."


def _phase_trends(e: EFacts) -> list[str]:
    """Per learning rate with a jump in the phase map: how the jump probability moves with the ridge."""
    trends = []
    for lr, g in e.ph.groupby("lr"):
        g = g.sort_values("ridge")
        if (g.p_jump > 0).any():
            ps = g.p_jump.to_numpy()
            word = (
                "rises with the ridge"
                if np.all(np.diff(ps) > 0)
                else "falls with the ridge"
                if np.all(np.diff(ps) < 0)
                else "is not monotone in the ridge"
            )
            vals = ", ".join(f"{p:.2f}" for p in ps)
            trends.append(
                f"at eta {lr:g} the jump probability {word} ({vals} for lambda "
                + ", ".join(f"{x:g}" for x in g.ridge)
                + ")"
            )
    return trends


def finding_g(g: GFacts | NotRun) -> str | None:
    if isinstance(g, NotRun):
        return None
    rows, parts = g.rows, []
    for w, gw in rows.groupby("width"):
        gw = gw.set_index("batch")
        if len(gw) > 1:
            bs = sorted(gw.index)
            parts.append(
                f"width {w}: " + ", ".join(f"batch {b}: {gw.loc[b, 'k']}/{gw.loc[b, 'n']} escaped" for b in bs)
            )
    for b, gb in rows.groupby("batch"):
        gb = gb.set_index("width")
        if len(gb) == 2 and gb.k.sum() > 0:
            w1, w2 = sorted(gb.index)
            same = overlap((gb.loc[w1, "p_low"], gb.loc[w1, "p_high"]), (gb.loc[w2, "p_low"], gb.loc[w2, "p_high"]))
            parts.append(
                f"at batch {b}, width {w2} vs {w1}: {gb.loc[w2, 'k']}/{gb.loc[w2, 'n']} vs "
                f"{gb.loc[w1, 'k']}/{gb.loc[w1, 'n']} ({'intervals overlap' if same else 'intervals apart'})"
            )
    by_b = rows.groupby("batch").k.sum()
    if len(by_b) > 1 and by_b.iloc[0] > 0 and (by_b.iloc[1:] == 0).all():
        parts.insert(0, f"batch {', '.join(map(str, by_b.index[1:]))} (less noise) removed the jumps at every width")
    return f"- **Width and batch** (g), eta {fmt_sched(g.lr)}: " + "; ".join(parts) + "."


def finding_hi(h: HFacts | NotRun, i: IFacts | NotRun, q: QFacts | NotRun) -> str | None:
    if isinstance(h, NotRun) or h.rows.empty:
        return None
    parts = []
    for eta, g in h.rows.groupby("eta"):
        est = ", ".join(
            f"{r.method} ({r.particles} particles) {r.p:.3g} [{r.p_low:.3g}, {r.p_high:.3g}]" for r in g.itertuples()
        )
        ok = "agree with" if g.agree.all() else "do NOT all agree with"
        parts.append(f"at eta {eta} brute force {g.bf_p.iloc[0]:.3g}, splitting {est}: the intervals {ok} brute force")
    text = "- **Rare-event splitting** (h, i): " + "; ".join(parts) + "."
    best = {}  # eta -> the tightest level bound over the methods
    for x in [] if isinstance(i, NotRun) else i.bounds:
        if x["p_bound"] == x["p_bound"] and (x["eta"] not in best or x["p_bound"] < best[x["eta"]]["p_bound"]):
            best[x["eta"]] = x
    if best:
        text += (
            " At small eta splitting with the sigma score does not reach the target, but its level bound does bound "
            "it: "
            + "; ".join(
                f"P(escape within {x['horizon']:,} steps) <= {x['p_bound']:.2g} at eta {eta} ({x['method']})"
                for eta, x in sorted(best.items(), reverse=True)
            )
            + " (95 %, (i))."
        )
    if not isinstance(q, NotRun) and len(q.rows):
        text += _collapse(q)
    return text


def _collapse(q: QFacts) -> str:
    """Why splitting fails at small eta, from the collapse hazard at ridge 1e-3."""
    t = q.rows[np.isclose(q.rows.ridge, 1e-3)]
    live, calm = t[t.p_10 > 0], t[t.p_10 == 0]
    said = [f"at eta {r.eta:g} such a step (> 10x) has chance {r.p_10:.2g} per step" for r in live.itertuples()]
    for r in calm.sort_values("eta", ascending=False).itertuples():
        said.append(f"at eta {r.eta:g} no basin state allows a one-step fall beyond {r.largest:.4f}x")
    text = " Why (q): escapes begin with one SGD step that collapses sigma_3; " + "; ".join(said) + "."
    if q.split_clean:
        text += (
            " Across ridges and learning rates (q): eta sets how often one step collapses sigma_3, the ridge how "
            "often a collapse becomes an escape."
        )
    return text
