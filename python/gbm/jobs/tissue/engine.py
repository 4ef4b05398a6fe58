"""The registration engine: ANTsPy (``antspyx``, the optional extra ``gbm[tissue]``).

The only module of gbm that imports ``ants``, and only inside :func:`engine` (so importing gbm, its
jobs and its CLI never loads it; without the extra a command stops with one line naming it).

Images travel as :class:`Volume` (a RAS-reoriented float array and its affine, as
:func:`gbm.io.load_nifti` returns them) and enter ANTs through :func:`to_ants`: ITK's physical
space is LPS, so the image's origin and direction are those of ``diag(-1, -1, 1) @ affine``; the
voxel order is kept, so an array comes back from ANTs on the grid it went in on.

:func:`register` runs a :class:`~gbm.jobs.tissue.config.Preset`: the linear stage
(``ants.registration`` of type ``preset.linear``), then, for a SyN preset, ``SyNOnly`` started from
that affine (ANTs collapses the two into ``<prefix>0GenericAffine.mat`` + ``<prefix>1Warp.nii.gz``),
or one call of type ``preset.one_call``.  Fixed image: the patient; moving image: the atlas T1; the
metric mask (``mask``, fixed space) applies to every stage.  The transforms are written under
``prefix`` (kept as outputs); :func:`warp` applies them to atlas maps with linear interpolation.

Determinism: the seed goes to antsRegistration's ``--random-seed`` (through
``ants.config.set_ants_deterministic(False, seed)``, which sets the seed and nothing else); without
it ANTs seeds its random sampling from the clock.  ITK takes its thread count from
``ITK_GLOBAL_DEFAULT_NUMBER_OF_THREADS`` once per process, when it makes its first image:
:func:`engine` sets it from ``threads`` before that (a later, different ``threads`` in the same
process has no effect).  Measured (benches/RESULTS.md): with one thread a seed gives bit-identical
transforms run to run and process to process; with two, the multi-threaded metric sums vary in
order and the transforms differ slightly between runs (affine parameters by ~1e-2).
"""

from __future__ import annotations

import contextlib
import os
import time
from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from gbm import extras
from gbm.jobs.tissue.config import Preset

#: RAS world <-> ITK's LPS world.
RAS_TO_LPS = np.diag([-1.0, -1.0, 1.0, 1.0])
#: The environment variable ITK reads its default thread count from.
THREADS_ENV = "ITK_GLOBAL_DEFAULT_NUMBER_OF_THREADS"


@dataclass(frozen=True, eq=False)
class Volume:
    """A 3D image: RAS-reoriented array (any real dtype) and its voxel -> world mm affine."""

    array: np.ndarray
    affine: np.ndarray


@dataclass(frozen=True)
class Registration:
    """What :func:`register` did.

    Attributes
    ----------
    forward : tuple of Path
        Atlas -> patient transforms in ``ants.apply_transforms`` order (warp first, then affine).
    inverse : tuple of Path
        Patient -> atlas, in ``ants.apply_transforms`` order with ``whichtoinvert`` as
        ``inverse_invert``.
    inverse_invert : tuple of bool
    seconds : dict of str -> float
        Wall time per stage (``linear``, ``syn`` or ``one_call``).
    cpu_seconds : dict of str -> float
        CPU time of this process per stage (all threads): on a shared machine the wall time
        grows with the load, the CPU time hardly does.
    calls : tuple of str
        The ``ants.registration`` calls made, as text (type and SyN options).
    engine : str
        ``antspyx <version>``.
    """

    forward: tuple[Path, ...]
    inverse: tuple[Path, ...]
    inverse_invert: tuple[bool, ...]
    seconds: dict[str, float] = field(default_factory=dict)
    cpu_seconds: dict[str, float] = field(default_factory=dict)
    calls: tuple[str, ...] = ()
    engine: str = ""


def engine(what: str, threads: int | None = None) -> Any:
    """The ``ants`` module; :class:`gbm.extras.MissingExtraError` naming ``gbm[tissue]`` if it is
    not installed (``what`` says who needs it).  ``threads``: ITK's thread count, effective when
    this process has not made an ITK image yet (module header)."""
    extras.require("tissue", what)
    if threads is not None:
        os.environ[THREADS_ENV] = str(int(threads))
    import ants  # antspyx: the optional extra gbm[tissue]

    return ants


def version() -> str:
    """``antspyx <version>`` (without importing ants when the distribution metadata has it)."""
    from importlib import metadata

    try:
        return f"antspyx {metadata.version('antspyx')}"
    except metadata.PackageNotFoundError:
        return "antspyx (version unknown)"


def to_ants(ants: Any, vol: Volume) -> Any:
    """A :class:`Volume` as an ``ants`` float32 image in ITK's LPS physical space."""
    b = RAS_TO_LPS @ np.asarray(vol.affine, dtype=np.float64)
    spacing = np.sqrt((b[:3, :3] ** 2).sum(axis=0))
    return ants.from_numpy(np.ascontiguousarray(vol.array, dtype=np.float32),
                           origin=tuple(float(v) for v in b[:3, 3]),
                           spacing=tuple(float(v) for v in spacing),
                           direction=b[:3, :3] / spacing)


@dataclass
class _Clock:
    """Wall and CPU seconds per stage."""

    wall: dict[str, float] = field(default_factory=dict)
    cpu: dict[str, float] = field(default_factory=dict)

    @contextlib.contextmanager
    def stage(self, name: str) -> Iterator[None]:
        w, c = time.perf_counter(), time.process_time()
        yield
        self.wall[name] = time.perf_counter() - w
        self.cpu[name] = time.process_time() - c


def _files(prefix: Path, names: tuple[str, ...]) -> tuple[Path, ...]:
    out = tuple(Path(f"{prefix}{n}") for n in names)
    missing = [str(p) for p in out if not p.exists()]
    if missing:
        raise RuntimeError(f"ANTs did not write {', '.join(missing)}")
    return out


def register(fixed: Volume, moving: Volume, mask: np.ndarray, preset: Preset, prefix: Path,
             seed: int = 1, threads: int = 2) -> Registration:
    """Register ``moving`` (the atlas T1) onto ``fixed`` (the patient) with ``preset``.

    Parameters
    ----------
    fixed, moving : Volume
    mask : ndarray, bool, fixed's shape
        Where the metric is evaluated (fixed space).
    preset : Preset
    prefix : Path
        Transform files are written as ``<prefix>0GenericAffine.mat`` (and ``<prefix>1Warp.nii.gz``,
        ``<prefix>1InverseWarp.nii.gz`` for SyN presets); the folder must exist.
    seed : int
        antsRegistration's ``--random-seed`` (non-zero).
    threads : int
        ITK threads (effective in a process that has not made an ITK image yet).
    """
    ants = engine("gbm tissue", threads)
    fx, mv = to_ants(ants, fixed), to_ants(ants, moving)
    mk = to_ants(ants, Volume(np.asarray(mask, dtype=np.float32), fixed.affine))
    ants.config.set_ants_deterministic(False, int(seed))  # the seed only (module header)
    clock = _Clock()
    calls: list[str] = []
    if preset.one_call is not None:
        with clock.stage("one_call"):
            ants.registration(fixed=fx, moving=mv, type_of_transform=preset.one_call,
                              mask=mk, outprefix=str(prefix))
        calls.append(f"type_of_transform={preset.one_call}")
    else:
        linear = Path(f"{prefix}linear_") if preset.syn_metric else prefix
        with clock.stage("linear"):
            ants.registration(fixed=fx, moving=mv, type_of_transform=preset.linear, mask=mk,
                              outprefix=str(linear))
        calls.append(f"type_of_transform={preset.linear}")
        if preset.syn_metric:
            (affine,) = _files(linear, ("0GenericAffine.mat",))
            with clock.stage("syn"):
                ants.registration(fixed=fx, moving=mv, type_of_transform="SyNOnly", mask=mk,
                                  initial_transform=str(affine), outprefix=str(prefix),
                                  syn_metric=preset.syn_metric,
                                  syn_sampling=preset.syn_parameter,
                                  reg_iterations=tuple(preset.syn_iterations),
                                  grad_step=0.2, flow_sigma=3, total_sigma=0)
            calls.append(f"type_of_transform=SyNOnly, initial_transform=<linear>, "
                         f"syn_metric={preset.syn_metric}, syn_sampling="
                         f"{preset.syn_parameter}, reg_iterations="
                         f"{'x'.join(map(str, preset.syn_iterations))}, grad_step=0.2, "
                         "flow_sigma=3, total_sigma=0")
            affine.unlink()
    ants.config.set_ants_deterministic(False, None)
    done = (clock.wall, clock.cpu, tuple(calls), version())
    if preset.one_call is not None or preset.syn_metric:
        aff, warp_, inv = _files(prefix, ("0GenericAffine.mat", "1Warp.nii.gz",
                                          "1InverseWarp.nii.gz"))
        return Registration((warp_, aff), (aff, inv), (True, False), *done)
    (aff,) = _files(prefix, ("0GenericAffine.mat",))
    return Registration((aff,), (aff,), (True,), *done)


def warp(reg: Registration, fixed: Volume, images: Mapping[str, Volume],
         threads: int = 2) -> dict[str, np.ndarray]:
    """Atlas images resampled onto ``fixed``'s grid through ``reg.forward`` (linear
    interpolation, 0 outside the atlas); name -> float64 array of fixed's (RAS) shape."""
    ants = engine("gbm tissue", threads)
    fx = to_ants(ants, fixed)
    out = {}
    for name, vol in images.items():
        w = ants.apply_transforms(fixed=fx, moving=to_ants(ants, vol),
                                  transformlist=[str(p) for p in reg.forward],
                                  interpolator="linear")
        out[name] = np.asarray(w.numpy(), dtype=np.float64)
    return out
