"""Settings of ``gbm tissue``: the registration presets and :class:`TissueConfig`.

A preset is a linear stage (rigid + affine, ANTs's ``antsRegistrationSyN[a]`` or its quick form)
optionally followed by a SyN stage with its metric and iterations per level (shrink factors
``2^(n-1) .. 1``, smoothing ``n-1 .. 0`` voxels, gradient step 0.2, flow sigma 3, total sigma 0: the
SyN stage of ANTs's scripts).  ``one_call`` presets run one ``ants.registration`` call of that
type (``predictgbm``: PredictGBM's ``antsRegistrationSyN[s,2]``, exactly).

Measured on a 1 mm known-warp BraTS phantom (benches/RESULTS.md "Tissue maps"; Dice of WM > 0.5 /
GM > 0.5 outside the core, wall time on 2 idle cores): affine 0.79 / 0.81 in 16 s, quick 0.96 / 0.97
in 68 s, default 0.98 / 0.98 in 146-226 s, predictgbm 0.98 / 0.98 in 746 s.  The default is the
most accurate recipe within the issue's 5 minutes.  Units: mm, seconds.
"""

from __future__ import annotations

from dataclasses import dataclass

from gbm.errors import require


@dataclass(frozen=True)
class Preset:
    """One registration recipe (module header).

    Attributes
    ----------
    name : str
    linear : str
        ``ants.registration`` type of the linear stage (``antsRegistrationSyNQuick[a]``: MI 32
        bins, 1000x500x250x0 at shrink 8x4x2x1; ``antsRegistrationSyN[a]``: the same plus 100
        iterations at full resolution).
    syn_metric : str or None
        ``"CC"`` (cross-correlation, radius ``syn_parameter``) or ``"mattes"`` (mutual
        information, ``syn_parameter`` bins); None: no SyN stage (affine only).
    syn_parameter : int
    syn_iterations : tuple of int
        Iterations per level, coarsest first; a trailing 0 skips the full-resolution level.
    one_call : str or None
        Instead of the two stages, one ``ants.registration`` of this type.
    summary : str
        One line for ``--help`` and tissue.json.
    """

    name: str
    linear: str = "antsRegistrationSyNQuick[a]"
    syn_metric: str | None = None
    syn_parameter: int = 2
    syn_iterations: tuple[int, ...] = ()
    one_call: str | None = None
    summary: str = ""


#: The presets by name; :data:`DEFAULT_PRESET` is the default.
PRESETS: dict[str, Preset] = {p.name: p for p in (
    Preset("affine", summary="rigid + affine only (MI); seconds, but misses local anatomy"),
    Preset("quick", syn_metric="mattes", syn_parameter=32, syn_iterations=(100, 70, 50, 0),
           summary="affine + SyN on MI at 1/8..1/2 resolution (as antsRegistrationSyNQuick[s])"),
    Preset("default", syn_metric="CC", syn_parameter=2, syn_iterations=(100, 70, 50, 0),
           summary="affine + SyN on CC (radius 2) at 1/8..1/2 resolution: PredictGBM's SyN "
           "without its full-resolution level"),
    Preset("predictgbm", one_call="antsRegistrationSyN[s,2]",
           summary="PredictGBM's antsRegistrationSyN[s,2] exactly (rigid, affine, SyN CC 2 down "
           "to full resolution); ~12 min at 1 mm on 2 cores"),
)}
DEFAULT_PRESET = "default"


@dataclass(frozen=True)
class TissueConfig:
    """Settings of ``gbm tissue`` (paths as given; units mm, seconds).

    Inputs: ``case`` (a BraTS case folder) or ``t1c`` and ``seg`` (and optionally ``t1``, the
    native T1); ``fixed`` names the image the atlas T1 is registered onto (``"t1c"`` default or
    ``"t1"``); ``brain_mask`` a brain mask for images that are not skull-stripped; ``labels``
    the label convention (as ``gbm fit``; None detects it, a BraTS 2021 case implies brats2021).

    Registration: ``preset`` (:data:`PRESETS`), ``mask_edema`` (also keep the edema out of the
    cost function; the tumour core always is), ``threads`` (ANTs/ITK threads; None: 2),
    ``seed`` (the engine's random seed).
    """

    t1c: str | None = None
    t1: str | None = None
    seg: str | None = None
    case: str | None = None
    fixed: str = "t1c"
    brain_mask: str | None = None
    labels: str | None = None
    preset: str = DEFAULT_PRESET
    mask_edema: bool = False
    threads: int | None = None
    seed: int = 1

    def validate(self) -> None:
        """Raise :class:`~gbm.errors.InputError` for a bad setting (files are checked when read)."""
        if self.case is None:
            require(self.seg is not None, "give --seg SEG (and --t1c T1C), or --case DIR")
            require(self.t1c is not None or self.t1 is not None,
                    "give --t1c T1C (or --t1 T1 with --fixed t1), or --case DIR")
        else:
            given = [n for n, v in (("--t1c", self.t1c), ("--t1", self.t1), ("--seg", self.seg))
                     if v is not None]
            require(not given, f"--case: do not combine with {', '.join(given)} (the folder "
                    "provides the images)")
        require(self.fixed in ("t1c", "t1"), f"--fixed must be t1c or t1, got {self.fixed!r}")
        require(self.preset in PRESETS, f"--preset must be one of {', '.join(PRESETS)}, got "
                f"{self.preset!r}")
        require(self.threads is None or (isinstance(self.threads, int) and self.threads >= 1),
                f"--threads must be a positive integer, got {self.threads}")
        require(isinstance(self.seed, int) and 1 <= self.seed < 2**31,
                f"--seed must be an integer in [1, 2^31), got {self.seed} (ANTs needs it non-zero)")

    @property
    def thread_count(self) -> int:
        return 2 if self.threads is None else int(self.threads)

