"""Patients: tumour segmentations observed at dated scans; unknown origin, lambda, rho*T (one scan)
or Dw, rho and the age (two or more).

* :mod:`gbm.problem.segmentation.labels`: label conventions (BraTS 2021/2023/2024, TUM, custom),
  the tumour regions (core, whole tumour, cavity) and :func:`whole_union`, the one union of the
  whole tumours of several scans (re-exported here);
* :mod:`gbm.problem.segmentation.model`: the interval observation model (core u >= theta_c, whole
  tumour u >= theta_e), numpy and torch sides, Dice;
* :mod:`gbm.problem.segmentation.patient`: loading a patient (maps, scans, recurrence, the brain
  mask built once) from files or a folder, in steps that can be run alone;
* :mod:`gbm.problem.segmentation.unknowns`: the unknowns of a patient fit (search coordinates,
  their physical meaning and box, the settings and the result: ``PatientFitSettings``,
  ``Physical``, ``Unknowns``, ``PatientFitResult``, ``NOMINAL_DAYS``, ``equivalent_radius``);
* :mod:`gbm.problem.segmentation.levels`: the grids of a fit (the solve sub-box and a coarse copy:
  ``FitLevel``, ``make_levels``, ``make_level``, ``Regions``, ``box_regions``), the FD solve of a
  search point on a level (``solve_states``) and the start and search box (``start_and_box``).

Units: mm, days, Dw in mm^2/day, rho in 1/day.
"""

from gbm.problem.segmentation.labels import whole_union

__all__ = ["whole_union"]
