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
    wall_times,
)


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
    )
    doc = (
        header.render(header.compute(base))
        + claims.render(claims.compute(a, j, n, m, p, k))
        + findings.render(findings.compute(a, b, c, d, e, f, g, h, i, p, q))
        + wall_times.render(wall_times.compute(timings, suite.RESULTS / "gpu_timings.json"))
        + body
        + configurations.render(configurations.compute(out))
    )
    return "\n".join(doc).rstrip("\n") + "\n"
