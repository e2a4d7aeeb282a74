"""Hand-made verdict evidence shared by the verdict tests: intervals and a slice on which every evidence supports."""

from __future__ import annotations

from tasks.config import VerdictOptions
from tasks.evaluate.statistics import Estimate

OPTIONS = VerdictOptions()
"""The default verdict thresholds."""


def interval(mean: float, low: float, high: float, n: int = 100) -> Estimate:
    """A mean with its 95 % interval over ``n`` examples."""
    return Estimate(mean, low, high, n)


SUPPORTING = {
    "agreement": interval(0.5, 0.45, 0.55),
    "comprehensiveness": interval(0.1, 0.08, 0.12),
    "sufficiency": interval(-0.1, -0.12, -0.08),
    "erasure": interval(0.05, 0.03, 0.07),
    "sensitivity": interval(0.2, 0.15, 0.25),
}
"""Evidence on which every kind supports faithfulness at the default thresholds."""
