"""Parameter inference next to the PINN (:mod:`gbm.pinn`): the FD-based fit on the Rust solver.

* :mod:`gbm.inference.fd`: FD-based least-squares inference of Dw, rho (and the seed) from
  density observations (``python -m gbm fit-fd``; :class:`~gbm.inference.fd.FdFitConfig`,
  :func:`~gbm.inference.fd.fit_fd`).

Both methods take their problem from :mod:`gbm.problem`. This package imports none of its modules
eagerly (no scipy or torch on ``import gbm.inference``).
"""
