"""The physics on a grid (units: mm, days, mm^2/day, 1/day).

* :mod:`gbm.model.geometry`: :class:`~gbm.model.geometry.Geometry` (tissue maps on a box, brain
  mask, Cahn-Hilliard phase field, the embedded ICBM152 atlas, the paper's disk), voxel centres;
* :mod:`gbm.model.simulation`: the FD forward simulation on the Rust solver
  (:func:`~gbm.model.simulation.simulate`, :func:`~gbm.model.simulation.make_solver`);
* :mod:`gbm.model.coarse`: coarse grids (the one block average and its edge rule, the block
  grid's affine) for coarse-to-fine fits and ``gbm synth --downsample``, and sub-boxes.

Imports only the bottom layer (:mod:`gbm.io`, :mod:`gbm.errors`, :mod:`gbm._core`).
"""
