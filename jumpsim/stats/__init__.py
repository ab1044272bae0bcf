"""Jump statistics from a dataset's tables, with confidence intervals.

``jumpsim.intervals`` (numpy/scipy: proportions, Poisson rates, replica means, the rate form, level bounds;
re-exported here), ``brute`` (first passage, Kaplan-Meier, exposure and jump rates, comparisons of two experiments),
``rare_events`` (splitting estimates from their tables), ``laws`` (the Arrhenius fit and the other escape laws,
Poisson regression, the exponential test of first-passage times, restart times).
"""

from ..intervals import (
    MIN_CROSSING_REPLICAS,
    LevelBound,
    RateEstimate,
    flux_bound_only,
    level_bound,
    lognormal_mean_interval,
    mean_interval,
    poisson_rate_ci,
    proportion_ci,
    rate_estimate,
    relative_se,
    replica_interval,
)
from .brute import (
    compare,
    exposure,
    first_passage,
    first_passage_rate,
    median_passage,
    proportion_difference,
    rate_ratio,
    rates,
    run_counts,
    survival_curves,
)
from .laws import arrhenius_fit, escape_laws, exponential_test, law_rate, poisson_glm, restart_time
from .rare_events import level_table, splitting, splitting_ratio
