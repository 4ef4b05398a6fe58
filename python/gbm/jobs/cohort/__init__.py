"""``gbm cohort``: one patient fit per patient of a folder or manifest, local pool or Ray.

* :mod:`gbm.jobs.cohort.runner`: :func:`~gbm.jobs.cohort.runner.run`, the front: settings, the
  work, the engine, then the table, the report and ``cohort.json``;
* :mod:`gbm.jobs.cohort.inputs`: the patients of a folder or CSV manifest
  (:func:`~gbm.jobs.cohort.inputs.discover`), which are finished and which to fit (``Job``);
* :mod:`gbm.jobs.cohort.engines`: the local process pool and Ray, the per-patient task, thread
  pinning;
* :mod:`gbm.jobs.cohort.table`: the table's columns and rows (from each patient's typed
  :class:`~gbm.jobs.fit.report.FitReport`), CSV and Parquet;
* :mod:`gbm.jobs.cohort.report`: ``report.md`` and the cohort figures.
"""

from __future__ import annotations

from gbm.jobs.cohort.inputs import Job, discover
from gbm.jobs.cohort.runner import run

__all__ = ["Job", "discover", "run"]
