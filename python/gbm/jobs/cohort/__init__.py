"""``gbm cohort``: one patient fit per patient of a folder or manifest, local pool or Ray.

* :mod:`gbm.jobs.cohort.runner`: discovery, engines, the cohort table (:func:`~gbm.jobs.cohort.runner.run`);
* :mod:`gbm.jobs.cohort.report`: ``report.md`` and the cohort figures.
"""

from __future__ import annotations

from gbm.jobs.cohort.runner import discover, run

__all__ = ["discover", "run"]
