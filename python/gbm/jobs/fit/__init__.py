"""``gbm fit``: calibrate the model to a patient's segmentations, forecast, plan.

* :mod:`gbm.jobs.fit.config`: :class:`~gbm.jobs.fit.config.FitConfig`, the settings, and their
  conversions into each method's settings;
* :mod:`gbm.jobs.fit.run`: :func:`~gbm.jobs.fit.run.fit_patient` (returns the typed report) and
  :func:`~gbm.jobs.fit.run.run_fit` (returns the ``results.json`` dict), the short driver;
* :mod:`gbm.jobs.fit.steps`: the steps it calls (load inputs, build levels, fit, posterior, the
  model on the brain, plans, probability maps, the report), each testable alone;
* :mod:`gbm.jobs.fit.report`: :class:`~gbm.jobs.fit.report.FitReport`, the typed content of
  ``results.json`` (written from it, read back by :mod:`gbm.jobs.cohort`);
* :mod:`gbm.jobs.fit.outputs`: the NIfTI maps, plans, figures and ``log.csv``;
* :mod:`gbm.jobs.fit.checkpoint`: the finished stages kept for ``--resume``.
"""

from __future__ import annotations

from gbm.clinical.identifiability import IDENTIFIABILITY
from gbm.jobs.fit.config import FitConfig
from gbm.jobs.fit.report import FitReport
from gbm.jobs.fit.run import fit_patient, run_fit

__all__ = ["IDENTIFIABILITY", "FitConfig", "FitReport", "fit_patient", "run_fit"]
