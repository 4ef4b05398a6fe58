"""Figures: arrays in, PNG bytes out (callers write them atomically).

* :mod:`gbm.viz.base`: the Agg backend, :func:`~gbm.viz.base.figure_bytes` and its ``DPI``;
* :mod:`gbm.viz.density`: density snapshots and field panels of forward runs;
* :mod:`gbm.viz.patient`: orthogonal patient panels (segmentation contours, density, plans),
  misfit traces, the posterior corner plot.

This layer draws; it imports only :mod:`gbm.errors` and :mod:`gbm.model`, so every layer above
may use it.
"""
