"""The inference problem, shared by both inference methods (PINN and FD-based); no torch.

Modules (import them directly; this package imports none of them eagerly):

* :mod:`gbm.problem.config`: :class:`~gbm.problem.config.ProblemConfig`, the problem's settings;
* :mod:`gbm.problem.domain`: :class:`~gbm.problem.domain.Domain` (coefficient fields on the box,
  seed) and :func:`~gbm.problem.domain.draw_seed` (seeded point draws);
* :mod:`gbm.problem.observations`: :class:`~gbm.problem.observations.Observations`, the data
  loaders (synthetic, NIfTI, CSV) and the reference solutions;
* :mod:`gbm.problem.build`: :func:`~gbm.problem.build.build_problem` ->
  :class:`~gbm.problem.build.Problem`;
* :mod:`gbm.problem.density`: the density observation model (density at points, L2), with a numpy
  side for the FD fit and a torch side for the PINN.

Units: mm, days, Dw in mm^2/day, rho in 1/day.
"""
