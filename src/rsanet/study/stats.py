"""The statistics behind every claim of the study's report.

Each comparison is made over seeds (a run per seed): the mean with its 95 % confidence
interval (Student's t), and a one-sided Welch's t-test whose p decides the verdict. A
claim "holds" only at p < :data:`ALPHA`; otherwise it is "not significant". Whether a
network learned at all is a binomial test of its pair accuracy against chance, per seed.

>>> round(mean_ci([60.0, 64.0, 68.0]).half_width, 2)
9.94
>>> welch([60.0, 64.0, 68.0], [30.0, 31.0, 29.0]).p < ALPHA
True
"""

from __future__ import annotations

import math
import statistics
from collections.abc import Sequence
from dataclasses import dataclass

#: significance level of every verdict
ALPHA = 0.05
#: fewest points a rank correlation is computed over
MIN_RANK_POINTS = 4


@dataclass(frozen=True)
class Interval:
    """A mean and the half-width of its confidence interval (0 for a single value)."""

    mean: float
    half_width: float
    n: int

    def __str__(self) -> str:
        return self.format(1)

    def format(self, decimals: int) -> str:
        """``mean ± half-width`` with ``decimals`` decimals (``mean`` alone for one value)."""
        if self.n < 2:
            return f"{self.mean:.{decimals}f}"
        return f"{self.mean:.{decimals}f} ± {self.half_width:.{decimals}f}"

    @property
    def low(self) -> float:
        return self.mean - self.half_width if self.n >= 2 else float("nan")


def mean_ci(values: Sequence[float], confidence: float = 0.95) -> Interval:
    """Mean of ``values`` with the half-width of its ``confidence`` interval (Student's t
    with n - 1 degrees of freedom)."""
    from scipy import stats

    values = [float(v) for v in values]
    if not values:
        return Interval(float("nan"), float("nan"), 0)
    mean = statistics.fmean(values)
    if len(values) < 2:
        return Interval(mean, float("nan"), len(values))
    sem = statistics.stdev(values) / math.sqrt(len(values))
    quantile = float(stats.t.ppf(0.5 + confidence / 2, len(values) - 1))
    return Interval(mean, quantile * sem, len(values))


@dataclass(frozen=True)
class Test:
    """The outcome of a one-sided test: statistic, p-value and its name for the page."""

    name: str
    statistic: float
    p: float

    @property
    def significant(self) -> bool:
        return self.p < ALPHA

    def __str__(self) -> str:
        p = "p < 0.001" if self.p < 0.001 else f"p = {self.p:.3f}"
        return f"{self.name} {self.statistic:+.2f}, {p}"


def welch(a: Sequence[float], b: Sequence[float]) -> Test:
    """One-sided Welch's t-test of mean(a) > mean(b).

    Two samples without spread leave the t statistic undefined: they are judged by the
    exact rank test instead (every value of a above every value of b by chance:
    p = 1 / C(n_a + n_b, n_a), 0.05 for three seeds each; p 1 unless a's is larger);
    fewer than two values on either side cannot be tested (p 1)."""
    from scipy import stats

    a, b = [float(v) for v in a], [float(v) for v in b]
    if len(a) < 2 or len(b) < 2:
        return Test("Welch's t (too few seeds)", float("nan"), 1.0)
    if statistics.pvariance(a) == 0 and statistics.pvariance(b) == 0:
        larger = statistics.fmean(a) > statistics.fmean(b)
        p = 1.0 / math.comb(len(a) + len(b), len(a)) if larger else 1.0
        return Test("rank test (no spread)", statistics.fmean(a) - statistics.fmean(b), p)
    result = stats.ttest_ind(a, b, equal_var=False, alternative="greater")
    return Test("Welch's t", float(result.statistic), float(result.pvalue))


def above_chance(successes: int, trials: int, chance: float) -> Test:
    """One-sided exact binomial test of a success rate above ``chance``."""
    from scipy import stats

    if trials <= 0:
        return Test("binomial", float("nan"), 1.0)
    result = stats.binomtest(int(successes), int(trials), chance, alternative="greater")
    return Test("binomial", successes / trials - chance, float(result.pvalue))


def above_zero(values: Sequence[float]) -> Test:
    """One-sided one-sample t-test of a mean above zero over seeds. Where every seed gives
    exactly the same value, as small counts often do, the t statistic is undefined: values
    all zero (a quantity zero by construction) give p 1, and the same non-zero value on
    every seed is judged by the exact sign test (all n seeds on the same side by chance:
    p = 0.5 ** n, so three seeds that each gain 2 are not yet significant)."""
    from scipy import stats

    values = [float(v) for v in values]
    if len(values) < 2:
        return Test("one-sample t (too few seeds)", float("nan"), 1.0)
    if statistics.pvariance(values) == 0:
        if values[0] == 0:
            return Test("one-sample t (no spread)", 0.0, 1.0)
        positive = values[0] > 0
        p = 0.5 ** len(values) if positive else 1.0
        return Test("sign test (no spread)", len(values) if positive else -len(values), p)
    result = stats.ttest_1samp(values, 0.0, alternative="greater")
    return Test("one-sample t", float(result.statistic), float(result.pvalue))


def kendall(a: Sequence[float], b: Sequence[float]) -> Test | None:
    """Kendall's tau of two orderings with its two-sided p; None under
    :data:`MIN_RANK_POINTS` points (a rank correlation over so few says nothing)."""
    from scipy import stats

    if len(a) < MIN_RANK_POINTS:
        return None
    result = stats.kendalltau(a, b)
    return Test("Kendall's tau", float(result.statistic), float(result.pvalue))


def verdict(test: Test) -> str:
    """ "holds" at p < :data:`ALPHA`, else "not significant"."""
    return "holds" if test.significant else "not significant"
