"""Tumour segmentation label conventions and the regions the observation model uses.

Conventions (values of the segmentation image; 0 is background everywhere):

==============  =========  =====  ==========  ================
name            necrosis   edema  enhancing   resection cavity
==============  =========  =====  ==========  ================
brats2021       1          2      4
brats2023       1          2      3
brats2024post   1          2      3           4
tum             4          3      1
==============  =========  =====  ==========  ================

``tum`` is the TUM / GliODIL data (1 enhancing, 3 edema, 4 necrotic).  A custom mapping is written
``necrosis=1,edema=2,enhancing=4[,cavity=5]``; a class may list several values joined by ``+``
(``enhancing=3+5``); a class left out has no label.

Regions (boolean arrays on the segmentation's grid): tumour core = necrosis | enhancing, whole tumour
= core | edema, enhancing, cavity, and ``tumour`` = all tumour labels minus the cavity (PredictGBM's
"all" recurrence set; equal to the whole tumour because the label classes are disjoint).
:func:`whole_union` is the one union of the whole tumours of several scans (the solve box, the
``--tumour-tissue wm`` region).

Detection (:func:`detect_convention`), applied once to the union of the label values of all scans
(and the recurrence) of a patient:

* with a given convention, every non-zero value must belong to it, else an error names the unknown
  values;
* without one, the candidates are the conventions (in the order of the table) whose label set
  contains every non-zero value present.  If the candidates give a present value different meanings
  the labels are ambiguous and the error lists the candidates with their meanings (``{1, 2, 4}``:
  brats2021 reads 4 as enhancing, brats2024post as cavity; ``{1, 3, 4}``: brats2024post or tum);
  with no candidate the error names the values; otherwise the first candidate is returned (all
  candidates read the present values alike, e.g. ``{1, 2, 3}`` -> brats2023, which brats2024post
  agrees with; ``{1, 2, 3, 4}`` -> brats2024post).
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any

import numpy as np

from gbm.errors import InputError

#: The label classes of a convention, in the order used in messages.
CLASSES = ("necrosis", "edema", "enhancing", "cavity")


@dataclass(frozen=True)
class LabelConvention:
    """Which label values of a segmentation mean which tumour class.

    Attributes
    ----------
    name : str
        ``brats2021``, ``brats2023``, ``brats2024post``, ``tum`` or ``custom(...)``.
    necrosis, edema, enhancing, cavity : tuple of int
        Label values of each class (disjoint, positive); empty when the class has no label.
    """

    name: str
    necrosis: tuple[int, ...]
    edema: tuple[int, ...]
    enhancing: tuple[int, ...]
    cavity: tuple[int, ...] = ()

    @property
    def values(self) -> frozenset[int]:
        """Every label value the convention knows (0, background, excluded)."""
        return frozenset(v for c in CLASSES for v in getattr(self, c))

    def meaning(self, value: int) -> str | None:
        """The class of a label value (``"necrosis"``, ...), or None if it is not in the convention."""
        for c in CLASSES:
            if value in getattr(self, c):
                return c
        return None

    def describe(self) -> str:
        """e.g. ``brats2021 (1 necrosis, 2 edema, 4 enhancing)``."""
        parts = sorted((v, c) for c in CLASSES for v in getattr(self, c))
        return f"{self.name} ({', '.join(f'{v} {c}' for v, c in parts)})"


CONVENTIONS: dict[str, LabelConvention] = {
    "brats2021": LabelConvention("brats2021", necrosis=(1,), edema=(2,), enhancing=(4,)),
    "brats2023": LabelConvention("brats2023", necrosis=(1,), edema=(2,), enhancing=(3,)),
    "brats2024post": LabelConvention("brats2024post", necrosis=(1,), edema=(2,), enhancing=(3,),
                                     cavity=(4,)),
    "tum": LabelConvention("tum", necrosis=(4,), edema=(3,), enhancing=(1,)),
}

_CUSTOM_HINT = ("expected auto, " + ", ".join(CONVENTIONS) +
                " or a mapping like necrosis=1,edema=2,enhancing=4[,cavity=5]")


def parse_convention(spec: str | None) -> LabelConvention | None:
    """``None``/``"auto"`` -> None (detect); a convention name; or a custom mapping.

    Raises
    ------
    InputError
        For an unknown name or a malformed / overlapping custom mapping.
    """
    if spec is None:
        return None
    text = str(spec).strip().replace(" ", "")
    key = text.lower()
    if key in ("", "auto"):
        return None
    if key in CONVENTIONS:
        return CONVENTIONS[key]
    if "=" not in text:
        raise InputError(f"--labels: unknown convention {spec!r}; {_CUSTOM_HINT}")
    classes: dict[str, tuple[int, ...]] = {}
    for item in text.split(","):
        if not item:
            continue
        k, sep, v = item.partition("=")
        k = k.lower()
        if not sep or k not in CLASSES:
            raise InputError(f"--labels: bad item {item!r} in {spec!r}; {_CUSTOM_HINT}")
        if k in classes:
            raise InputError(f"--labels: {k} given twice in {spec!r}")
        try:
            vals = tuple(int(x) for x in v.split("+"))
        except ValueError:
            raise InputError(f"--labels: {k} needs integer label values (e.g. {k}=3 or "
                             f"{k}=3+5), got {v!r}") from None
        if any(x <= 0 for x in vals):
            raise InputError(f"--labels: label values must be positive (0 is background), "
                             f"got {k}={v}")
        classes[k] = vals
    seen: dict[int, str] = {}
    for k, vals in classes.items():
        for x in vals:
            if x in seen and seen[x] != k:
                raise InputError(f"--labels: value {x} given for both {seen[x]} and {k}")
            seen[x] = k
    if not any(classes.get(c) for c in ("necrosis", "edema", "enhancing")):
        raise InputError(f"--labels: {spec!r} names no tumour class (necrosis, edema, enhancing)")
    name = "custom(" + ",".join(f"{c}={'+'.join(map(str, classes[c]))}" for c in CLASSES
                                if c in classes) + ")"
    return LabelConvention(name, necrosis=classes.get("necrosis", ()),
                           edema=classes.get("edema", ()),
                           enhancing=classes.get("enhancing", ()),
                           cavity=classes.get("cavity", ()))


def _fmt(values: Iterable[int]) -> str:
    return "{" + ", ".join(str(v) for v in sorted(values)) + "}"


def detect_convention(values: Iterable[int], given: LabelConvention | None,
                      name: str) -> LabelConvention:
    """Check (``given``) or detect the label convention of a set of label values.

    Parameters
    ----------
    values : iterable of int
        Label values present (0 = background may be included).
    given : LabelConvention or None
        The user's convention (``--labels``), or None to detect it (see the module header).
    name : str
        What the values come from (files, flags), for error messages.

    Raises
    ------
    InputError
        No non-zero label, values unknown to ``given``, no matching convention, or ambiguity.
    """
    present = frozenset(int(v) for v in values) - {0}
    if not present:
        raise InputError(f"no tumour labels in {name} (all voxels are 0)")
    if given is not None:
        unknown = present - given.values
        if unknown:
            raise InputError(f"{name}: label value(s) {_fmt(unknown)} are not in the convention "
                             f"{given.describe()}")
        return given
    cands = [c for c in CONVENTIONS.values() if present <= c.values]
    if not cands:
        raise InputError(f"{name}: labels {_fmt(present)} match no known convention ("
                         + "; ".join(c.describe() for c in CONVENTIONS.values())
                         + "); pass --labels, e.g. necrosis=1,edema=2,enhancing=4")
    differ = sorted(v for v in present if len({c.meaning(v) for c in cands}) > 1)
    if differ:
        alts = " or ".join(f"{c.name} (" + ", ".join(f"{v} = {c.meaning(v)}" for v in differ) + ")"
                           for c in cands)
        raise InputError(f"{name}: labels {_fmt(present)} are ambiguous: {alts}; pass --labels")
    return cands[0]


@dataclass(frozen=True, eq=False)
class Regions:
    """Boolean tumour regions of one segmentation (all arrays of the segmentation's shape).

    Attributes
    ----------
    core : ndarray, bool
        Tumour core = necrosis | enhancing.
    whole : ndarray, bool
        Whole tumour = core | edema.
    enhancing : ndarray, bool
        Enhancing tumour.
    cavity : ndarray, bool
        Resection cavity (empty unless the convention has one).
    """

    core: np.ndarray
    whole: np.ndarray
    enhancing: np.ndarray
    cavity: np.ndarray

    @property
    def tumour(self) -> np.ndarray:
        """All tumour labels minus the cavity (PredictGBM's "all" set): ``whole & ~cavity``."""
        return self.whole & ~self.cavity

    @property
    def edema(self) -> np.ndarray:
        """Edema (the whole tumour outside the core): ``whole & ~core``."""
        return self.whole & ~self.core


def regions(labels: np.ndarray, conv: LabelConvention) -> Regions:
    """Split a label array into :class:`Regions` by ``conv`` (values outside ``conv`` are ignored;
    :func:`detect_convention` is where unknown values are refused).

    Parameters
    ----------
    labels : ndarray of int, any shape
    conv : LabelConvention
    """
    a = np.asarray(labels)

    def isin(vals: tuple[int, ...]) -> np.ndarray:
        return np.isin(a, np.asarray(vals, dtype=np.int64)) if vals else np.zeros(a.shape, bool)

    necrosis = isin(conv.necrosis)
    enhancing = isin(conv.enhancing)
    core = necrosis | enhancing
    return Regions(core=core, whole=core | isin(conv.edema), enhancing=enhancing,
                   cavity=isin(conv.cavity))


def whole_union(regions: Iterable[Any]) -> np.ndarray:
    """The union of the whole tumours of several scans.

    Parameters
    ----------
    regions : iterable of region objects
        Anything with a boolean ``whole`` array (:class:`Regions`,
        :class:`gbm.problem.segmentation.levels.Regions`, a segmentation model), all of one shape.

    Returns
    -------
    ndarray, bool, that shape
        A new array (the inputs are not modified).

    Raises
    ------
    InputError
        With no regions, or regions of different shapes.
    """
    out: np.ndarray | None = None
    for n, r in enumerate(regions):
        w = np.asarray(r.whole, dtype=bool)
        if out is None:
            out = w.copy()
            continue
        if w.shape != out.shape:
            raise InputError(f"whole_union: region {n} has shape {w.shape}, the first "
                             f"{out.shape}")
        out |= w
    if out is None:
        raise InputError("whole_union: no regions given")
    return out
