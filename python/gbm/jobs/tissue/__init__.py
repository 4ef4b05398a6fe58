"""``gbm tissue``: white/gray matter and CSF maps for a patient who comes with MR images and a tumour
segmentation but no tissue maps, by registering the ICBM152 atlas onto the patient (ANTsPy, the
optional extra ``gbm[tissue]``); and the known-warp phantoms that measure it.

* :mod:`gbm.jobs.tissue.config`: the registration presets and :class:`TissueConfig`;
* :mod:`gbm.jobs.tissue.atlas`: the atlas T1, WM, GM from nilearn's wheel, the CSF rule;
* :mod:`gbm.jobs.tissue.inputs`: reading and checking the images, the brain, the metric mask;
* :mod:`gbm.jobs.tissue.engine`: the ANTsPy wrapper (the only module that imports ``ants``);
* :mod:`gbm.jobs.tissue.report`: ``tissue.json`` and the quality checks;
* :mod:`gbm.jobs.tissue.figure`: ``tissue.png``;
* :mod:`gbm.jobs.tissue.outputs`: the output folder (maps in the segmentation's stored header);
* :mod:`gbm.jobs.tissue.run`: :func:`make_tissue`, the job;
* :mod:`gbm.jobs.tissue.phantom`: BraTS-like phantoms through a known map (``gbm synth --brats``);
* :mod:`gbm.jobs.tissue.accuracy`: Dice of recovered maps against a phantom's truth.

Units: mm, seconds.
"""

from gbm.jobs.tissue.config import DEFAULT_PRESET, PRESETS, Preset, TissueConfig
from gbm.jobs.tissue.run import make_tissue, tissue_maps

__all__ = ["DEFAULT_PRESET", "PRESETS", "Preset", "TissueConfig", "make_tissue", "tissue_maps"]
