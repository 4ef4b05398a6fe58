"""``tissue.json``: what ``gbm tissue`` did (typed, then written as JSON), and its quality checks.

Quality (:func:`quality`), both measured on the patient's grid without any ground truth:

* ``ncc_outside_tumour``: Pearson correlation of the warped atlas T1 with the patient's fixed
  image over the metric mask (brain minus the core [minus the edema]).  T1 onto T1c correlates
  well where the registration worked (>= 0.8 on the known-warp phantoms with any preset, see
  benches/RESULTS.md); below :data:`MIN_NCC` a warning is printed;
* ``brain_dice``: Dice of the warped atlas brain (> 0.5) with the patient's brain mask (>= 0.95 on
  the phantoms); below :data:`MIN_BRAIN_DICE` a warning.

The warning is one line ``gbm tissue: warning: ...`` on stderr; the maps are still written.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from typing import Any

import numpy as np

#: Below these the registration is flagged (maps still written).
MIN_NCC = 0.6
MIN_BRAIN_DICE = 0.85
CSF_RULE = "clip(1 - wm - gm, 0, 1) inside the brain mask, 0 outside"
MAP_RULE = ("atlas WM and GM warped with linear interpolation (healthy atlas tissue stays under "
            "the tumour), clipped to [0, 1], 0 outside the brain mask")


@dataclass(frozen=True)
class Quality:
    """The quality figures (module header) and the warning, if any."""

    ncc_outside_tumour: float
    brain_dice: float
    warning: str | None = None


@dataclass(frozen=True)
class TissueReport:
    """The content of ``tissue.json`` (units: seconds, ml)."""

    atlas: str
    engine: str
    preset: str
    preset_summary: str
    calls: tuple[str, ...]
    fixed: dict[str, str]
    segmentation: str
    labels: str
    mask: dict[str, Any]
    seed: int
    threads: int
    seconds: dict[str, float]
    quality: Quality
    transforms: dict[str, Any]
    outputs: dict[str, str]
    maps: dict[str, str] = field(default_factory=dict)
    volumes_ml: dict[str, float] = field(default_factory=dict)
    versions: dict[str, Any] = field(default_factory=dict)

    def to_json(self) -> dict[str, Any]:
        return asdict(self)


def _dice(a: np.ndarray, b: np.ndarray) -> float:
    n = int(a.sum()) + int(b.sum())
    return 1.0 if n == 0 else 2.0 * float((a & b).sum()) / n


def quality(warped_t1: np.ndarray, fixed: np.ndarray, mask: np.ndarray, warped_brain: np.ndarray,
            brain: np.ndarray) -> Quality:
    """The quality figures of a registration (module header)."""
    a, b = warped_t1[mask], fixed[mask]
    ncc = float(np.corrcoef(a, b)[0, 1]) if a.size > 1 and a.std() > 0 and b.std() > 0 else 0.0
    bd = _dice(warped_brain > 0.5, brain)
    problems = []
    if ncc < MIN_NCC:
        problems.append(f"the warped atlas T1 correlates {ncc:.2f} with the patient's image "
                        f"outside the tumour (< {MIN_NCC})")
    if bd < MIN_BRAIN_DICE:
        problems.append(f"the warped atlas brain overlaps the patient's brain with Dice {bd:.2f} "
                        f"(< {MIN_BRAIN_DICE})")
    warning = None
    if problems:
        warning = ("; ".join(problems) + ": the registration may have failed; check tissue.png "
                   "(another --preset, --fixed t1, or --brain-mask may help)")
    return Quality(round(ncc, 4), round(bd, 4), warning)
