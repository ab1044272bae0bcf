"""The tables' Arrow schemas: one explicit schema per table with a schema version, cast before every write.

Columns every jumpsim version wrote are REQUIRED (a dataset without them is unreadable); columns added later
(``LATER_COLUMNS``) are optional and read as null in older datasets.
"""

from __future__ import annotations

import pyarrow as pa

# 2: B_r columns in runs and traces; 3: per-replica flux of the rate form (LATER_COLUMNS); 4: rare_levels;
# 5: importance sampling (the proposal, the weights' spread, the path lower bound)
SCHEMA_VERSION = 5
TABLES = ("runs", "events", "passages", "traces")

_f64_list = pa.list_(pa.float64())
SCHEMAS = {
    "runs": pa.schema(
        [
            ("seed", pa.int64()),
            ("status", pa.string()),
            ("steps", pa.int64()),
            ("horizon", pa.int64()),
            ("initial_rank", pa.int32()),
            ("final_rank", pa.int32()),
            ("min_rank", pa.int32()),
            ("n_down", pa.int32()),
            ("n_up", pa.int32()),
            ("n_events", pa.int32()),
            ("events_overflow", pa.int32()),
            ("final_loss", pa.float64()),
            ("final_test_error", pa.float64()),
            ("final_singular_values", _f64_list),
        ]
    ),
    "events": pa.schema(
        [
            ("seed", pa.int64()),
            ("step", pa.int64()),
            ("rank_before", pa.int32()),
            ("rank_after", pa.int32()),
            ("direction", pa.string()),
        ]
    ),
    "passages": pa.schema(
        [
            ("seed", pa.int64()),
            ("start_rank", pa.int32()),
            ("level", pa.int32()),
            ("step", pa.int64()),  # null: not reached by the horizon (right-censored)
        ]
    ),
    "traces": pa.schema(
        [
            ("seed", pa.int64()),
            ("step", pa.int64()),
            ("rank", pa.int32()),
            ("loss", pa.float64()),
            ("test_error", pa.float64()),
            ("singular_values", _f64_list),
        ]
    ),
    "experiments": pa.schema(
        [
            ("config_id", pa.string()),
            ("name", pa.string()),
            ("config", pa.string()),  # normalized config as JSON text
            ("threshold", pa.float64()),
            ("relative_threshold", pa.bool_()),
            ("horizon", pa.int64()),
            ("start", pa.string()),  # JSON: facts about a shared start (init = "gd")
            ("schema_version", pa.int32()),
            ("jumpsim_version", pa.string()),
            ("jax_version", pa.string()),
            ("backend", pa.string()),
            ("devices", pa.string()),
            ("created", pa.string()),
        ]
    ),
}
RARE_TABLES = ("rare", "rare_replicas", "rare_iterations", "rare_curve", "rare_levels")
SCHEMAS.update(
    {
        "rare": pa.schema(  # one row per splitting estimate and shard of replicas
            [
                ("estimate_id", pa.string()),
                ("method", pa.string()),  # "tams" | "rate"
                ("score", pa.string()),
                ("direction", pa.string()),  # "down" | "up"
                ("start_rank", pa.int32()),
                ("level", pa.int32()),  # target: rank <= level (down) or >= level (up)
                ("horizon", pa.int64()),  # steps (tams: the horizon T; rate: train.steps, for P within T)
                ("every", pa.int64()),  # steps per period
                ("particles", pa.int32()),
                ("replica_lo", pa.int32()),
                ("replica_hi", pa.int32()),  # inclusive
                ("kill_fraction", pa.float64()),
                ("basin", pa.float64()),  # rate form (null for tams)
                ("interface", pa.float64()),
                ("flux_crossings", pa.int64()),
                ("flux_exposure_steps", pa.int64()),
                ("flux_overflow", pa.int64()),
                ("seed_steps", pa.int64()),  # SGD steps simulated, replays, clones and flux included
                ("extinct", pa.int32()),
                ("capped", pa.int32()),  # replicas stopped by rare.max_iterations
                ("period_capped", pa.int64()),  # rate: AMS particles stopped by rare.max_steps
                ("wall_s", pa.float64()),
                ("settings", pa.string()),  # JSON of the [rare] section
                ("created", pa.string()),
            ]
        ),
        "rare_replicas": pa.schema(
            [
                ("estimate_id", pa.string()),
                ("replica", pa.int32()),
                ("p", pa.float64()),  # tams: P(target within T); rate: P(target before basin | own crossings)
                ("log10_p", pa.float64()),  # -inf for an extinct replica
                ("iterations", pa.int32()),
                ("reached", pa.int32()),
                ("extinct", pa.bool_()),
            ]
        ),
        "rare_iterations": pa.schema(
            [
                ("estimate_id", pa.string()),
                ("replica", pa.int32()),
                ("iteration", pa.int32()),
                ("z", pa.float64()),
                ("killed", pa.int32()),
            ]
        ),
        "rare_curve": pa.schema(  # tams: the replica's estimate of P(target within step)
            [("estimate_id", pa.string()), ("replica", pa.int32()), ("step", pa.int64()), ("p", pa.float64())]
        ),
        # schema version 4: the replica's estimate of P(max score >= z) at the intermediate levels
        # splitting.LEVEL_GRID (rate form: before the basin, from its own crossings; none without crossings)
        "rare_levels": pa.schema(
            [("estimate_id", pa.string()), ("replica", pa.int32()), ("z", pa.float64()), ("p", pa.float64())]
        ),
    }
)
# Columns every version of jumpsim wrote (schema version 1): a dataset without them is unreadable.
# Columns added later are optional: older datasets read them as null.
REQUIRED = {name: tuple(SCHEMAS[name].names) for name in SCHEMAS}
# Added later (schema 2: the paper's absorbing sets B_r; schema 3: the rate form's per-replica flux): null in
# datasets written before.
LATER_COLUMNS = {
    "runs": [
        ("br_rank", pa.int32()),  # r of B_r
        ("br_entries", pa.int32()),  # entries into B_r (a start inside counts as one)
        ("br_exits", pa.int32()),  # exits from B_r after an entry: the one-way claim in its own terms
        ("br_steps", pa.int64()),  # steps spent inside (checks inside x detect.every)
        ("br_first_entry", pa.int64()),  # step of the first entry, null if never
        ("final_balance_gap", pa.float64()),  # relative balancedness gap at the last finite check
        ("final_param_norm2", pa.float64()),  # |theta|^2 at the last finite check
    ],
    "traces": [("balance_gap", pa.float64()), ("param_norm2", pa.float64()), ("in_br", pa.bool_())],
    # schema version 3: the rate form's replicas each run their own flux phase (null for tams)
    "rare_replicas": [
        ("flux_crossings", pa.int64()),
        ("flux_exposure_steps", pa.int64()),
        # schema version 5: the hits' contributions to the replica's estimate (likelihood ratio x weight / N):
        # sum of squares and largest, and the spread of log10 ratio over its hits (null before; 1-weight hits: 0)
        ("weight_sq_sum", pa.float64()),
        ("weight_max", pa.float64()),
        ("log10_w_sd", pa.float64()),
    ],
    # schema version 5: the version of the trajectories that wrote the experiment's runs (null before: 1)
    "experiments": [("trajectory_version", pa.int32())],
    # schema version 5: the proposal the particles ran ("uniform" when null) and the path lower bound of the
    # bracket (null where not computed)
    "rare": [
        ("proposal", pa.string()),
        ("p_lower_bound", pa.float64()),
        ("log10_p_lower_bound", pa.float64()),  # (the bound of a long path underflows a float64)
        ("lower_bound_draws", pa.int64()),  # m0: the steps of the path the bound was found at
    ],
}
for _name, _cols in LATER_COLUMNS.items():
    for _f in _cols:
        SCHEMAS[_name] = SCHEMAS[_name].append(pa.field(*_f))
for _name in SCHEMAS:
    SCHEMAS[_name] = SCHEMAS[_name].with_metadata(
        {"jumpsim_schema_version": str(SCHEMA_VERSION), "jumpsim_table": _name}
    )


def build(name: str, cols: dict) -> pa.Table:
    """A table of jumpsim's schema from column values; columns added after schema 1 may be left out (null)."""
    schema = SCHEMAS[name]
    n = len(next(iter(cols.values()))) if cols else 0

    def col(f):
        if cols.get(f.name) is None and f.name not in REQUIRED.get(name, ()):
            return pa.nulls(n, f.type)
        v = cols[f.name]
        return v.cast(f.type) if isinstance(v, pa.Array) else pa.array(v, type=f.type)

    return pa.table({f.name: col(f) for f in schema}, schema=schema)


def schema_ok(name: str, schema: pa.Schema) -> bool:
    """A part's schema is jumpsim's: every column it has is in the current schema with the same type,
    and every column all versions wrote is there (later columns may be absent: older datasets)."""
    want = SCHEMAS[name]
    have = {f.name: f.type for f in schema}
    known = all(c in want.names and want.field(c).type == typ for c, typ in have.items())
    return known and all(c in have for c in REQUIRED[name])
