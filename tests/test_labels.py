"""Label conventions: regions of every convention, detection, ambiguity and custom mappings;
the whole-tumour union of several scans."""

from __future__ import annotations

import numpy as np
import pytest
from gbm.errors import InputError
from gbm.problem.segmentation.labels import (
    CONVENTIONS,
    LabelConvention,
    detect_convention,
    parse_convention,
    regions,
    whole_union,
)

#: Voxel counts of each label value in the hand-made array.
COUNTS = {0: 50, 1: 3, 2: 5, 3: 7, 4: 11, 5: 13}


def _array() -> np.ndarray:
    vals = np.concatenate([np.full(n, v, dtype=np.int16) for v, n in COUNTS.items()])
    rng = np.random.default_rng(0)
    return rng.permutation(vals).reshape(89, 1, 1)  # 50 + 39 voxels, shuffled


# (convention, core, whole, enhancing, cavity) voxel counts on _array()
EXPECTED = {
    "brats2021": (3 + 11, 3 + 11 + 5, 11, 0),
    "brats2023": (3 + 7, 3 + 7 + 5, 7, 0),
    "brats2024post": (3 + 7, 3 + 7 + 5, 7, 11),
    "tum": (3 + 11, 3 + 11 + 7, 3, 0),
}


@pytest.mark.parametrize("name", list(EXPECTED))
def test_regions_of_every_convention(name: str) -> None:
    lab = _array()
    r = regions(lab, CONVENTIONS[name])
    core, whole, enh, cav = EXPECTED[name]
    assert (int(r.core.sum()), int(r.whole.sum()), int(r.enhancing.sum()),
            int(r.cavity.sum())) == (core, whole, enh, cav)
    assert r.core.dtype == bool and r.core.shape == lab.shape
    assert not np.any(r.core & ~r.whole)  # nested
    np.testing.assert_array_equal(r.tumour, r.whole & ~r.cavity)
    assert int(r.edema.sum()) == whole - core


def test_tum_meanings() -> None:
    c = CONVENTIONS["tum"]
    assert (c.enhancing, c.edema, c.necrosis) == ((1,), (3,), (4,))
    assert CONVENTIONS["brats2024post"].cavity == (4,)


@pytest.mark.parametrize(("values", "expected"), [
    ({0, 1, 2, 3}, "brats2023"), ({1, 2, 3, 4}, "brats2024post"), ({0, 2}, "brats2021"),
    ({1, 2, 3}, "brats2023"), ({2, 3}, "brats2023")])
def test_detection(values: set[int], expected: str) -> None:
    assert detect_convention(values, None, "seg.nii.gz").name == expected


def test_detection_1_2_3_reads_like_2024post() -> None:
    conv = detect_convention({1, 2, 3}, None, "x")
    post = CONVENTIONS["brats2024post"]
    assert all(conv.meaning(v) == post.meaning(v) for v in (1, 2, 3))


def test_ambiguous_1_2_4_lists_candidates() -> None:
    with pytest.raises(InputError) as e:
        detect_convention({0, 1, 2, 4}, None, "seg.nii.gz")
    msg = str(e.value)
    assert "\n" not in msg and "seg.nii.gz" in msg and "ambiguous" in msg
    assert "brats2021 (4 = enhancing)" in msg and "brats2024post (4 = cavity)" in msg
    assert "--labels" in msg and "tum" not in msg


def test_ambiguous_1_3_4_lists_candidates() -> None:
    with pytest.raises(InputError, match="ambiguous") as e:
        detect_convention({1, 3, 4}, None, "seg.nii.gz")
    msg = str(e.value)
    assert "brats2024post (1 = necrosis, 3 = enhancing, 4 = cavity)" in msg
    assert "tum (1 = enhancing, 3 = edema, 4 = necrosis)" in msg


def test_ambiguity_resolved_by_given_convention() -> None:
    assert detect_convention({1, 2, 4}, CONVENTIONS["brats2021"], "x").name == "brats2021"
    assert detect_convention({1, 3, 4}, parse_convention("tum"), "x").name == "tum"


def test_unknown_values() -> None:
    with pytest.raises(InputError, match=r"seg\.nii\.gz: labels \{1, 7\} match no known"):
        detect_convention({0, 1, 7}, None, "seg.nii.gz")
    with pytest.raises(InputError, match=r"label value\(s\) \{3\} are not in the convention "
                       r"brats2021"):
        detect_convention({1, 2, 3}, CONVENTIONS["brats2021"], "seg.nii.gz")
    with pytest.raises(InputError, match="no tumour labels in seg.nii.gz"):
        detect_convention({0}, None, "seg.nii.gz")


def test_parse_names_and_auto() -> None:
    assert parse_convention(None) is None
    assert parse_convention("auto") is None
    assert parse_convention("BraTS2021") is CONVENTIONS["brats2021"]
    with pytest.raises(InputError, match="unknown convention 'brats2020'"):
        parse_convention("brats2020")


def test_custom_mapping() -> None:
    c = parse_convention("necrosis=1, edema=2, enhancing=3+5, cavity=6")
    assert isinstance(c, LabelConvention)
    assert (c.necrosis, c.edema, c.enhancing, c.cavity) == ((1,), (2,), (3, 5), (6,))
    assert c.name == "custom(necrosis=1,edema=2,enhancing=3+5,cavity=6)"
    r = regions(_array(), c)
    assert (int(r.core.sum()), int(r.whole.sum()), int(r.enhancing.sum()),
            int(r.cavity.sum())) == (3 + 7 + 13, 3 + 7 + 13 + 5, 7 + 13, 0)
    assert detect_convention({1, 2, 5}, c, "x") is c


@pytest.mark.parametrize("spec", ["necrosis=1,edema=x", "necrosis=1,blob=2", "edema=0",
                                  "necrosis=1,edema=1", "cavity=4", "necrosis=1,necrosis=2"])
def test_bad_custom_mapping(spec: str) -> None:
    with pytest.raises(InputError, match="--labels"):
        parse_convention(spec)


def test_whole_union_of_scans() -> None:
    import gbm.problem.segmentation as seg
    from gbm.problem.segmentation.levels import Regions as BoxRegions

    assert seg.whole_union is whole_union
    conv = CONVENTIONS["brats2023"]
    a = np.zeros((4, 5, 3), np.int16)
    b = np.zeros_like(a)
    a[0, 0, 0], a[1, 1, 1], a[2, 2, 2] = 1, 2, 3  # necrosis, edema, enhancing: all whole tumour
    b[1, 1, 1], b[3, 4, 2] = 3, 2
    ra, rb = regions(a, conv), regions(b, conv)
    u = whole_union([ra, rb])
    np.testing.assert_array_equal(np.argwhere(u), [[0, 0, 0], [1, 1, 1], [2, 2, 2], [3, 4, 2]])
    assert u is not ra.whole and ra.whole.sum() == 3  # a new array; the inputs are untouched
    np.testing.assert_array_equal(whole_union(iter([ra])), ra.whole)
    box = BoxRegions(core=rb.core, whole=rb.whole.astype(np.uint8), cavity=rb.cavity)
    np.testing.assert_array_equal(whole_union([ra, box]), u)  # any object with .whole
    with pytest.raises(InputError, match="no regions"):
        whole_union([])
    with pytest.raises(InputError, match=r"region 1 has shape \(4, 5, 2\)"):
        whole_union([ra, regions(a[:, :, :2], conv)])
