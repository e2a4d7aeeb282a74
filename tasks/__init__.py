"""attention-audit: is a transformer classifier's attention a faithful explanation of its predictions?

One package per stage of the pipeline, each importing only the packages below it (``make lint`` checks
it): ``pipeline`` (run plan, one batch, the Prefect tasks) > ``report`` > ``verdict`` > ``evaluate`` >
``interventions`` > ``explain`` > ``model`` > ``data`` > ``store``; at the bottom ``config``, ``records``,
``errors`` and ``faults`` import nothing of the project. The README's architecture section maps them.
"""

__version__ = "0.1.0"
