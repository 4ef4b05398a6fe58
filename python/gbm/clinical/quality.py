"""Whether a fitted model is supported by its scans: the whole-tumour Dice of the model at the
estimate against each scan's segmentation, and the one-line warning when one falls below
:data:`MIN_MODEL_DICE` (``gbm fit`` still writes its outputs: they are what was asked for, and the
warning says what they are worth).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

__all__ = ["MIN_MODEL_DICE", "Quality", "check_quality"]

#: below this whole-tumour Dice of the model at the estimate, a fit is reported as not supported
#: by its scans: the model then misses more of the segmentation than it matches. Fits that work
#: are far above it (FD fits of the synthetic patients: >= 0.95 with and without label noise);
#: the PINN's failure mode on segmentations is far below it (0.05-0.28, benches/RESULTS.md).
MIN_MODEL_DICE = 0.5


@dataclass(frozen=True)
class Quality:
    """The lowest whole-tumour Dice of the model over the scans, the threshold it was held to and
    the warning (None when the fit passes)."""

    min_model_dice_whole: float
    threshold: float
    warning: str | None


def check_quality(days: Sequence[float], model_dice_whole: Sequence[float],
                  network_dice_whole: Sequence[float | None] | None = None,
                  method: str = "fd") -> Quality:
    """The quality check of a fit.

    Parameters
    ----------
    days : sequence of float
        Scan days (since the first scan), one per scan.
    model_dice_whole : sequence of float
        Whole-tumour Dice of the model (FD solver at the estimate) against each scan.
    network_dice_whole : sequence of float or None, optional
        The network's own u against each scan (``method`` "pinn" or "bilo"), for the warning's
        diagnosis.
    method : {"fd", "pinn", "bilo"}
        The fitting method, for the advice in the warning.

    Returns
    -------
    Quality
        The worst scan is the first with the lowest Dice; a warning when it is below
        :data:`MIN_MODEL_DICE`.
    """
    k = min(range(len(model_dice_whole)), key=lambda i: model_dice_whole[i])
    worst = model_dice_whole[k]
    if worst >= MIN_MODEL_DICE:
        return Quality(worst, MIN_MODEL_DICE, None)
    msg = (f"the model at the estimate does not reproduce the scan of day {days[k]:g} "
           f"(whole-tumour Dice {worst:.2f} < {MIN_MODEL_DICE:g}): its parameters, "
           "forecasts and plans are not supported by the data")
    net = network_dice_whole[k] if network_dice_whole is not None else None
    if net is not None and net >= MIN_MODEL_DICE:
        msg += (f"; the network's own u matches it (Dice {net:.2f}) with a field the model does "
                f"not produce, the {method} network's known failure on segmentations: use "
                "--method fd")
    elif net is not None:
        msg += (f"; the network's own u does not match it either (Dice {net:.2f}): the {method} "
                "network did not learn the scan; use --method fd")
    elif method == "fd":
        msg += ("; check the labels (--labels), the tissue maps and whether the tumour is "
                "multifocal (one origin is fitted)")
    return Quality(worst, MIN_MODEL_DICE, msg)
