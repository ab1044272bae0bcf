"""The experiment report (data/results/REPORT.md), one module per section.

Each section module has ``compute(out, ...) -> facts`` (a typed record, or ``fmt.NotRun`` where its data are
missing; it writes the section's Parquet summaries and figures into ``out``) and ``render(facts) -> lines``
(Markdown, no I/O). What one section needs of another is passed to it explicitly, so the order below is
the order of the dependencies: (a)'s start facts feed (i), (p) and the findings; the escape curve of the GPU
packs feeds (h), (j), (p) and (q); (j)'s fit feeds (k) and (p); (o) feeds (q); the claims and findings read
the facts of many sections.
"""

from __future__ import annotations

from pathlib import Path

import pandas as pd

import analysis
import suite
from . import (
    a_gd_stuck,
    b_escape,
    c_one_way,
    claims,
    configurations,
    d_depth,
    e_phase,
    f_schedules,
    findings,
    g_width_batch,
    h_splitting,
    header,
    i_small_eta,
    j_curve,
    k_recipe,
    m_depth4_search,
    n_one_way,
    o_escape_paths,
    p_depth4_curve,
    q_collapse_hazard,
    r_sampling,
    s_batch,
    t_laws,
    u_optimizers,
    v_phase,
    w_rank4_search,
    wall_times,
    y_barrier,
    z_rare_methods,
)
from .fmt import NotRun


def report(out: Path, timings: dict) -> str:
    """The report of the datasets under ``out``, with the CPU wall times ``timings`` (experiment -> seconds)."""
    base = suite.base_config()
    start = analysis.start_facts(suite.START, base)
    cv = suite.curve_rows(out)  # the GPU's escape curve: (h), (j), (p) and (q) read it

    a = a_gd_stuck.compute(out, start, base)
    b = b_escape.compute(out)
    c = c_one_way.compute(out)
    d = d_depth.compute(out)
    e = e_phase.compute(out)
    f = f_schedules.compute(out)
    g = g_width_batch.compute(out)
    h = h_splitting.compute(out, cv)
    i = i_small_eta.compute(out, start)
    j = j_curve.compute(out, cv)
    k = k_recipe.compute(out, j_curve.base_fit(j))
    m = m_depth4_search.compute(out, base)
    n = n_one_way.compute(out)
    o = o_escape_paths.compute(out)
    p = p_depth4_curve.compute(out, cv, j_curve.base_fit(j), start, base)
    q = q_collapse_hazard.compute(out, cv, o, base)
    law_lines, law_claims = escape_law(out, cv, i)

    body = (
        a_gd_stuck.render(a)
        + b_escape.render(b)
        + c_one_way.render(c)
        + d_depth.render(d)
        + e_phase.render(e)
        + f_schedules.render(f)
        + g_width_batch.render(g)
        + h_splitting.render(h)
        + i_small_eta.render(i)
        + j_curve.render(j)
        + k_recipe.render(k)
        + m_depth4_search.render(m)
        + n_one_way.render(n)
        + o_escape_paths.render(o)
        + p_depth4_curve.render(p)
        + q_collapse_hazard.render(q)
        + law_lines
    )
    doc = (
        header.render(header.compute(base))
        + claims.render(claims.compute(a, j, n, m, p, k) + law_claims)
        + findings.render(findings.compute(a, b, c, d, e, f, g, h, i, p, q))
        + wall_times.render(wall_times.compute(timings, suite.RESULTS / "gpu_timings.json"))
        + body
        + configurations.render(configurations.compute(out))
    )
    return "\n".join(doc).rstrip("\n") + "\n"


def escape_law(out: Path, cv, i=None) -> tuple[list[str], list]:
    """Sections (r)-(z), rendered (sampling, batch size, the laws, optimizers, the phase diagram, rank against time,
    the barrier, the rare-event methods below brute force's reach), and the rows (r)-(y) add to the claims table.
    ``cv``: the escape curve of (j); ``i``: (i)'s facts (computed here if not given). A section without its data is
    left out (``splice`` then keeps its old text)."""
    r, s = r_sampling.compute(out, cv), s_batch.compute(out, cv)
    curves = _curves(out, cv, r, s)
    if i is None:  # (i)'s bounds at small eta, unless the whole report already computed them
        i = i_small_eta.compute(out, analysis.start_facts(suite.START, suite.base_config()))
    t = t_laws.compute(out, curves, [] if isinstance(i, NotRun) else i.bounds)
    u, v, w = u_optimizers.compute(out, cv), v_phase.compute(out), w_rank4_search.compute(out, cv)
    y = y_barrier.compute(out, t_laws.fit_laws(curves))
    shown = [(r, r_sampling.render), (s, s_batch.render), (t, lambda t: t_laws.render(t) + t_laws.theories(r, s, t))]
    shown += [(u, u_optimizers.render), (v, v_phase.render), (w, w_rank4_search.render), (y, y_barrier.render)]
    shown += [(z_rare_methods.compute(), z_rare_methods.render)]
    lines = [line for facts, render in shown if not isinstance(facts, NotRun) for line in render(facts)]
    return lines, claims.escape_law(r, s, t, u, v, w, y)


def _curves(out: Path, cv, r, s) -> dict:
    """Every escape curve the laws are fitted to: the ridges of (j), depth 4 of (p), B = 2, 3, 4 of (s), sampling
    without replacement of (r)."""
    curves = {f"(j) ridge {ridge:g}": g for ridge, g in cv.groupby("ridge")} if len(cv) else {}
    d4 = suite.load(out, "p_depth4_curve")
    if d4 is not None and not d4["runs"].empty:
        curves["(p) depth 4"] = pd.DataFrame(analysis.escape_rows(d4))
    elif (out / "p_depth4_curve.parquet").exists():
        curves["(p) depth 4"] = pd.read_parquet(out / "p_depth4_curve.parquet")
    if not isinstance(s, s_batch.NotRun):
        curves.update({f"(s) B = {b}": g for b, g in s.curve.groupby("batch") if b > 1})
    elif (out / "s_batch.parquet").exists():
        summary = pd.read_parquet(out / "s_batch.parquet")  # the committed summary where the datasets are absent
        curves.update({f"(s) B = {b}": g for b, g in summary.groupby("batch") if b > 1})
    if not isinstance(r, r_sampling.NotRun):
        curves["(r) without replacement"] = r.rows[r.rows.sampling == "without_replacement"]
    return curves


def splice(text: str, sections: list[str]) -> str:
    """``text`` (a REPORT.md) with each top-level section "## (x) ..." of ``sections`` (rendered lines, in order)
    put in place of the section of the same letter, or before "## Configurations" where it has none."""
    lines = text.rstrip("\n").split("\n")
    new = _by_letter(sections)
    old = _by_letter(lines)
    for letter, body in new.items():
        if letter in old:
            a, b = _span(lines, letter)
            lines[a:b] = body
        else:
            at = lines.index("## Configurations") if "## Configurations" in lines else len(lines)
            lines[at:at] = body
    return "\n".join(lines) + "\n"


def _by_letter(lines: list[str]) -> dict[str, list[str]]:
    out, cur = {}, None
    for line in lines:
        if line.startswith("## "):
            cur = line[4] if line.startswith("## (") else None
            if cur:
                out[cur] = []
        if cur:
            out[cur].append(line)
    return out


def _span(lines: list[str], letter: str) -> tuple[int, int]:
    a = next(i for i, x in enumerate(lines) if x.startswith(f"## ({letter})"))
    b = next((i for i in range(a + 1, len(lines)) if lines[i].startswith("## ")), len(lines))
    return a, b
