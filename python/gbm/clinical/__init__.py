"""From a calibrated model to the clinic: what the scans identify, whether the fit is supported,
forecasts and radiotherapy plans.

* :mod:`gbm.clinical.identifiability`: what one or several scans fix, absolute Dw, rho and age
  from an assumed age or front speed (the ``IDENTIFIABILITY`` note);
* :mod:`gbm.clinical.quality`: the quality check of a fit (``MIN_MODEL_DICE``);
* :mod:`gbm.clinical.forecasts`: the fitted model on the whole brain at the scans and forecast
  days, P(u > level) maps from posterior samples;
* :mod:`gbm.clinical.plans`: standard and model CTVs, iso-density plans, recurrence coverage
  (pure array functions, mm not voxels).
"""
