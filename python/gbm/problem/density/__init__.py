"""The paper's experiments: dense density observations of u, unknown Dw and rho (and the seed).

* :mod:`gbm.problem.density.config`: :class:`~gbm.problem.density.config.ProblemConfig`, the
  problem's settings;
* :mod:`gbm.problem.density.observations`: :class:`~gbm.problem.density.observations.Observations`,
  the data loaders (synthetic, NIfTI, CSV) and the reference solutions;
* :mod:`gbm.problem.density.noise`: the noise models of the observations;
* :mod:`gbm.problem.density.build`: :func:`~gbm.problem.density.build.build_problem` ->
  :class:`~gbm.problem.density.build.Problem`;
* :mod:`gbm.problem.density.model`: the density observation model (density at points, L2), with a
  numpy side for the FD fit and a torch side for the PINN.
"""
