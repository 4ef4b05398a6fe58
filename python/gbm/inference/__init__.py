"""FD-based inference: the classical methods on the Rust solver (no torch).

* :mod:`gbm.inference.density_fit`: least-squares inference of Dw, rho (and the seed) from dense
  density observations (``gbm fit-fd``; :class:`~gbm.inference.density_fit.FdFitConfig`,
  :func:`~gbm.inference.density_fit.fit_fd`);
* :mod:`gbm.inference.segmentation_fit`: the patient fit on segmentations: CMA-ES on a coarse
  grid, then trust-region least squares on the input grid
  (:func:`~gbm.inference.segmentation_fit.fit_segmentations`);
* :mod:`gbm.inference.posterior`: ensemble MCMC around the patient fit's estimate (90 %
  intervals, per-voxel probabilities).

The network methods are their sibling :mod:`gbm.pinn`; both take their problem (what is observed,
what is unknown) from :mod:`gbm.problem`, and neither imports the other.
"""
