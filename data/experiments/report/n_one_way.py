"""(n) One way, quantitatively: up-jumps and exits from B_2 at the rank-2 minimum and after a kick."""

from __future__ import annotations

from pathlib import Path
from typing import NamedTuple

import numpy as np
import pandas as pd

from jumpsim import stats

import suite
from .fmt import NotRun, fmt_rate, not_run
from analysis import configs_with_runs, n_div, splitting_rows

NAME = "n_one_way"
KICK_PACK = "c_b2"
KICK_END = 50_000  # the kick's last step (eta 0.14, then 0.05)


class NRow(NamedTuple):
    eta: float
    seeds: int
    diverged: int
    left: int  # seeds that left B_2
    exits: tuple  # exits from B_2 / steps inside, with the Poisson interval
    up: tuple  # up-jumps 2 -> 3 / steps at rank 2, with the Poisson interval
    tams: pd.Series | None  # the TAMS estimate of P(rank >= 3 within T)


class NKick(NamedTuple):
    seeds: int
    device: str
    up_kick: int  # up-jumps out of rank 2 during the kick, over exp_kick steps at rank 2
    exp_kick: int
    up_small: int  # ... and after it
    exp_small: int
    entered: int  # seeds that entered B_2
    small_exits: int  # exits from B_2 after entry
    inside: int  # steps inside B_2
    first_entry: int  # the earliest first entry into B_2
    since_median: float  # steps from a seed's last down-jump to rank 2 to its up-jump after the kick
    within: int  # of n_since up-jumps, those within 10,000 steps of it
    n_since: int
    entered_after: int  # those following a down-jump made after the kick


class NFacts(NamedTuple):
    table: list[NRow] | NotRun  # the rank-2 minimum (n_one_way)
    kick: NKick | None  # the kick with B_2 counted (GPU pack c_b2)
    by_eta: dict  # eta -> {exits, inside, up, exposure, up_high, tams_p}


def compute(out: Path) -> NFacts:
    """The n_one_way dataset and the c_b2 pack (writes n_one_way.parquet if either is there)."""
    table, by_eta = _rank2_minimum(out)
    kick = _kick(out)
    res = dict(by_eta)
    if kick is not None:
        res["kick"] = {
            "small_exits": kick.small_exits,
            "first_entry": kick.first_entry,
            "up_kick": kick.up_kick,
            "exp_kick": kick.exp_kick,
            "up_small": kick.up_small,
            "exp_small": kick.exp_small,
            "up_small_high": stats.poisson_rate_ci(kick.up_small, kick.exp_small)[1],
        }
    if res:
        pd.DataFrame([{"setting": str(k), **{kk: vv for kk, vv in v.items()}} for k, v in res.items()]).to_parquet(
            out / "n_one_way.parquet"
        )
    return NFacts(table, kick, by_eta)


def _rank2_minimum(out: Path) -> tuple[list[NRow] | NotRun, dict]:
    data = suite.load(out, NAME)
    if data is None or data["runs"].empty:
        return not_run(NAME, data), {}
    r, ev = data["runs"], data["events"]
    exp_, counts = stats.exposure(r, ev)
    sp = splitting_rows(data) if not data["rare"].empty else pd.DataFrame()
    table, res = [], {}
    for cid, c, rr in configs_with_runs(data):
        eta = c["train"]["lr"]
        sel = (counts.config_id == cid) & (counts.rank_before == 2) & (counts.rank_after > 2)
        up = int(counts[sel]["count"].sum())
        e2 = int(exp_[(exp_.config_id == cid) & (exp_["rank"] == 2)].exposure_steps.sum())
        lo, hi = stats.poisson_rate_ci(up, e2)
        ex, inside = int(rr.br_exits.sum()), int(rr.br_steps.sum())
        xlo, xhi = stats.poisson_rate_ci(ex, inside)
        t = sp[sp.config_id == cid] if len(sp) else sp
        tams = t.iloc[0] if len(t) else None
        table.append(
            NRow(eta, len(rr), n_div(rr), int((rr.br_exits > 0).sum()), (ex, inside, xlo, xhi), (up, e2, lo, hi), tams)
        )
        res[float(eta)] = {
            "exits": ex,
            "inside": inside,
            "up": up,
            "exposure": e2,
            "up_high": hi,
            "tams_p": float(t.iloc[0].p) if len(t) else float("nan"),
        }
    return table, res


def _kick(out: Path) -> NKick | None:
    kick = suite.load_pack(out, (KICK_PACK,))
    if kick is None:
        return None
    r, ev = kick["runs"], kick["events"]
    e_all, c_all = stats.exposure(r, ev)
    e_small, c_small = stats.exposure(r, ev, burn_in=KICK_END)

    def up_rate(e_, c_):
        cnt = int(c_[(c_.rank_before == 2) & (c_.rank_after > 2)]["count"].sum())
        return cnt, int(e_[e_["rank"] == 2].exposure_steps.sum())

    ua, ea = up_rate(e_all, c_all)
    us, es = up_rate(e_small, c_small)
    # each up-jump out of rank 2 after the kick: steps since that seed last jumped down to rank <= 2
    key = ["config_id", "seed"]
    down = ev[(ev.direction == "down") & (ev.rank_after <= 2)][key + ["step"]].sort_values("step")
    up = ev[(ev.direction == "up") & (ev.rank_before <= 2) & (ev.rank_after > 2) & (ev.step >= KICK_END)]
    up = up[key + ["step"]].sort_values("step")
    since = pd.merge_asof(
        up,
        down.rename(columns={"step": "entered"}),
        left_on="step",
        right_on="entered",
        by=key,
        allow_exact_matches=False,
    )
    entered_after = int((since.entered >= KICK_END).sum())
    since = (since.step - since.entered).to_numpy()
    settled = int(np.sum(~(since < 10_000)))
    return NKick(
        seeds=len(r),
        device=suite.pack_device(out, [KICK_PACK]),
        up_kick=ua - us,
        exp_kick=ea - es,
        up_small=us,
        exp_small=es,
        entered=int((r.br_entries > 0).sum()),
        small_exits=int(r.br_exits.sum()),
        inside=int(r.br_steps.sum()),
        first_entry=int(r[r.br_entries > 0].br_first_entry.min()),
        since_median=np.median(since),
        within=len(since) - settled,
        n_since=len(since),
        entered_after=entered_after,
    )


def render(n: NFacts) -> list[str]:
    lines = ["## (n) One way, quantitatively: up-jumps and exits from B_2", ""]
    if isinstance(n.table, NotRun):
        lines += n.table.lines()
    else:
        lines += [
            "From the rank-2 minimum (`rank2_start.npz`: sigma_3 = 0 to rounding, inside B_2 = rank <= 2 and "
            "balancedness gap <= 0.1), SGD at a small eta and at the kick's eta, with B_2 visits counted at every "
            "check (`detect.absorbing`), and the up-jump probability within T by TAMS (score: sigma_3 growing from "
            "its start toward tau).",
            "",
            "| eta | seeds | diverged | left B_2 (seeds) | exits / steps inside B_2 | up-jumps 2 -> 3 / steps at "
            "rank 2 "
            "| TAMS P(rank >= 3 within T) |",
            "|---|---|---|---|---|---|---|",
        ]
        for q in n.table:
            s_ = q.tams
            if s_ is None:
                tams = "-"
            elif s_.p > 0:
                tams = f"{s_.p:.3g} [{s_.p_low:.3g}, {s_.p_high:.3g}] ({s_.extinct} of {s_.replicas} extinct)"
            else:
                tams = f"0: all {s_.replicas} replicas extinct (every particle tied at its floor)"
            lines.append(
                f"| {q.eta:g} | {q.seeds} | {q.diverged} | {q.left} | {fmt_rate(*q.exits)} "
                f"| {fmt_rate(*q.up)} | {tams} |"
            )
        lines.append("")
    return lines + ([] if n.kick is None else _render_kick(n.kick))


def _render_kick(k: NKick) -> list[str]:
    return [
        f"The kick experiment (c) again with {k.seeds:,} seeds on {k.device} (eta 0.14 to step "
        "50,000, then 0.05), B_2 counted: up-jumps out of rank 2 during the kick "
        f"{fmt_rate(k.up_kick, k.exp_kick, *stats.poisson_rate_ci(k.up_kick, k.exp_kick))}; after it, at eta 0.05, "
        f"{fmt_rate(k.up_small, k.exp_small, *stats.poisson_rate_ci(k.up_small, k.exp_small))}. Seeds that entered "
        f"B_2: {k.entered:,}; exits from B_2 after entry: {k.small_exits:,} "
        f"({k.inside:,} steps inside; every seed's first entry into B_2 came at step "
        f"{k.first_entry:,} or later). The up-jumps at eta 0.05 come {k.since_median:,.0f} steps "
        f"(median) after the seed's last jump down to rank 2, {k.within} of {k.n_since} within "
        f"10,000 steps of it, and {k.entered_after} of {k.n_since} follow a down-jump made after the kick: sigma_3 "
        "that the kick left near tau, still decaying at eta 0.05, crosses tau back and forth (near the threshold "
        "the ridge's pull to 0 and the data's pull up nearly cancel). None comes from the rank-2 minimum itself "
        "(the table above).",
        "",
        "Why none leave rank 2 from the rank-2 minimum, even at eta 0.14: there every layer maps through the same "
        "2-dimensional internal subspaces, and an SGD step (a rank-one update of each layer, whose row and column "
        "directions lie in those subspaces, plus the ridge's shrinkage) keeps them there, so rank <= 2 is "
        "invariant at any eta in exact arithmetic; float32 rounding keeps sigma_3 near its floor (TAMS finds no "
        "level to split on). What does leave at large eta is the balancedness part of B_2: at eta 0.14 "
        "every seed's gap exceeded the tolerance within a few hundred steps while its rank stayed 2.",
        "",
    ]
