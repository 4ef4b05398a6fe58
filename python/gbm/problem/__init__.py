"""What is observed and what is unknown, shared by both inference methods (FD-based and PINN);
no torch at import.

Modules and subpackages (import them directly; this package imports none of them eagerly):

* :mod:`gbm.problem.domain`: :class:`~gbm.problem.domain.Domain` (coefficient fields on the box,
  seed) and :func:`~gbm.problem.domain.draw_seed` (seeded point draws);
* :mod:`gbm.problem.density`: the paper's experiments: dense density observations of u, unknown
  Dw and rho (and the seed) - its settings, observations, noise, problem build and the L2
  observation model;
* :mod:`gbm.problem.segmentation`: patients: tumour segmentations at dated scans, unknown origin,
  lambda and rho*T or Dw, rho and the age - label conventions, the interval observation model,
  patient loading, the unknowns and the grids (coarse levels) both patient methods share.

Units: mm, days, Dw in mm^2/day, rho in 1/day.
"""
