"""From a calibrated model to the clinic: radiotherapy plans and their coverage.

* :mod:`gbm.clinical.plans`: standard and model CTVs, iso-density plans, recurrence coverage
  (pure array functions, mm not voxels).
"""
