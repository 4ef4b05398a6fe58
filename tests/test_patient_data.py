"""Patient loading: folder layouts, --scan form, grid/affine checks, labels, orientation; each
step of load_patient on its own; the brain mask built once."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
from conftest import AFFINE, synthetic_maps, write_nifti
from gbm import io
from gbm.errors import InputError
from gbm.problem.segmentation.labels import CONVENTIONS, regions
from gbm.problem.segmentation.patient import (
    FOLDER_ROLES,
    GridRef,
    PatientFiles,
    RawSeg,
    Roles,
    Scan,
    SegFile,
    check_inside_brain,
    check_scan_days,
    folder_files,
    folder_layout,
    label_convention,
    load_patient,
    make_recurrence,
    make_scans,
    parse_scan,
    patient_files,
    read_maps,
    read_segmentations,
    tumour_as_white_matter,
)

SHAPE = (40, 44, 30)
CENTRE = tuple((n - 1) / 2 for n in SHAPE)


def _ball(radius: float, centre: tuple[float, ...] = CENTRE) -> np.ndarray:
    idx = np.indices(SHAPE).astype(float)
    return np.sqrt(sum((idx[a] - centre[a]) ** 2 for a in range(3))) <= radius


def _seg(r_whole: float, r_core: float, centre: tuple[float, ...] = CENTRE) -> np.ndarray:
    """brats2023 labels: edema 2 out to r_whole, enhancing 3 inside r_core, necrosis 1 at r<1.5."""
    lab = np.zeros(SHAPE, dtype=np.uint8)
    lab[_ball(r_whole, centre)] = 2
    lab[_ball(r_core, centre)] = 3
    lab[_ball(1.5, centre)] = 1
    return lab


def _maps() -> dict[str, np.ndarray]:
    wm, gm = synthetic_maps(SHAPE)
    csf = np.clip(1 - wm - gm, 0, 1) * _ball(15)
    return {"wm": wm, "gm": gm, "csf": csf}


def _flags(d: Path, segs: list[tuple[np.ndarray, float]], affine: np.ndarray = AFFINE,
           ) -> dict[str, object]:
    d.mkdir(parents=True, exist_ok=True)
    m = _maps()
    out: dict[str, object] = {k: str(write_nifti(d / f"{k}.nii.gz", v, affine))
                              for k, v in m.items()}
    out["scans"] = [f"{write_nifti(d / f'seg{i}.nii.gz', s, affine, np.uint8)}@{day:g}"
                    for i, (s, day) in enumerate(segs)]
    return out


def _predictgbm(d: Path, segs: list[tuple[np.ndarray, float]], rec: np.ndarray | None = None
                ) -> Path:
    m = _maps()
    for k, v in m.items():
        (d / "tissue_segmentation").mkdir(parents=True, exist_ok=True)
        write_nifti(d / "tissue_segmentation" / f"{k}_pbmap.nii.gz", v)
    (d / "tumor_segmentation").mkdir()
    write_nifti(d / "tumor_segmentation" / "tumor_seg.nii.gz", segs[0][0], dtype=np.uint8)
    entries = [{"file": "tumor_segmentation/tumor_seg.nii.gz", "day": segs[0][1]}]
    for s, day in segs[1:]:
        name = f"tumor_segmentation/tumor_seg_day{day:g}.nii.gz"
        write_nifti(d / name, s, dtype=np.uint8)
        entries.append({"file": name, "day": day})
    if len(segs) > 1:
        (d / "scans.json").write_text(json.dumps({"scans": entries}))
    if rec is not None:
        (d / "longitudinal").mkdir()
        write_nifti(d / "longitudinal" / "recurrence_preop.nii.gz", rec, dtype=np.uint8)
    return d


def _same(a, b) -> None:  # type: ignore[no-untyped-def]
    np.testing.assert_array_equal(a.wm, b.wm)
    np.testing.assert_array_equal(a.gm, b.gm)
    np.testing.assert_array_equal(a.csf, b.csf)
    np.testing.assert_allclose(a.affine, b.affine)
    assert a.days_since_first == b.days_since_first
    assert a.convention == b.convention
    for s, t in zip(a.scans, b.scans):
        np.testing.assert_array_equal(s.labels, t.labels)
        np.testing.assert_array_equal(s.regions.whole, t.regions.whole)


def test_parse_scan() -> None:
    assert parse_scan("a/b@c/seg.nii.gz@120") == ("a/b@c/seg.nii.gz", 120.0)
    assert parse_scan("seg.nii@-3.5") == ("seg.nii", -3.5)
    for bad in ("seg.nii.gz", "@3", "seg.nii.gz@x", "seg.nii.gz@nan"):
        with pytest.raises(InputError, match="--scan"):
            parse_scan(bad)


def test_layouts_and_scan_flags_load_the_same(tmp_path: Path) -> None:
    s0 = _seg(6, 3)
    flags = load_patient(**_flags(tmp_path / "flags", [(s0, 0.0)]))  # type: ignore[arg-type]
    pg = load_patient(patient_dir=_predictgbm(tmp_path / "pg", [(s0, 0.0)]))
    c = tmp_path / "container"
    c.mkdir()
    for k, v in _maps().items():
        write_nifti(c / f"00000-{k}.nii.gz", v)
    write_nifti(c / "00000-tumorseg.nii.gz", s0, dtype=np.uint8)
    cont = load_patient(patient_dir=c)
    for p in (pg, cont):
        _same(flags, p)
    assert flags.convention.name == "brats2023"
    r = flags.scans[0].regions
    assert int(r.whole.sum()) == int(_ball(6).sum())
    assert int(r.core.sum()) == int(_ball(3).sum())
    assert flags.scans[0].labels.dtype == np.int16
    assert flags.spacing == (1.0, 1.0, 1.0)
    assert flags.recurrence is None and pg.recurrence is None
    assert flags.brain_mask().dtype == bool
    g = flags.geometry()
    assert g.full_shape == SHAPE and g.phi is None
    np.testing.assert_array_equal(g.crop(flags.scans[0].labels), flags.scans[0].labels[
        g.offset[0]:g.offset[0] + g.shape[0], g.offset[1]:g.offset[1] + g.shape[1],
        g.offset[2]:g.offset[2] + g.shape[2]])
    g2 = flags.geometry(slice_index=14)
    crop = g2.crop(flags.scans[0].labels)
    assert crop.shape == g2.shape and crop.dtype == np.int16 and crop.flags.c_contiguous
    np.testing.assert_array_equal(g2.crop(g2.to_full(g2.wm)), g2.wm.astype(np.float32))


def test_two_scans_and_recurrence(tmp_path: Path) -> None:
    s0, s1, rec = _seg(5, 2.5), _seg(7, 4), _seg(9, 6)
    p = load_patient(patient_dir=_predictgbm(tmp_path / "pg", [(s0, 10.0), (s1, 100.0)], rec))
    assert [s.day for s in p.scans] == [10.0, 100.0]
    assert p.days_since_first == (0.0, 90.0)
    assert p.recurrence is not None and np.isnan(p.recurrence.day)
    assert int(p.recurrence.regions.tumour.sum()) == int(_ball(9).sum())
    f = _flags(tmp_path / "flags", [(s0, 10.0), (s1, 100.0)])
    q = load_patient(**f, recurrence=str(  # type: ignore[arg-type]
        write_nifti(tmp_path / "rec.nii.gz", rec, dtype=np.uint8)) + "@250")
    _same(p, q)
    assert q.recurrence is not None and q.recurrence.day == 250.0


def test_patient_dir_excludes_flags(tmp_path: Path) -> None:
    d = _predictgbm(tmp_path / "pg", [(_seg(5, 2), 0.0)])
    with pytest.raises(InputError, match="--patient: do not combine with --wm"):
        load_patient(patient_dir=d, wm=str(d / "tissue_segmentation" / "wm_pbmap.nii.gz"))
    with pytest.raises(InputError, match="neither the PredictGBM layout"):
        load_patient(patient_dir=tmp_path)
    (d / "tumor_segmentation" / "tumor_seg.nii.gz").unlink()
    with pytest.raises(InputError, match="--patient: file not found: .*tumor_seg.nii.gz"):
        load_patient(patient_dir=d)


def test_grid_and_affine_mismatch(tmp_path: Path) -> None:
    f = _flags(tmp_path, [(_seg(5, 2), 0.0)])
    other = np.zeros((40, 44, 31), np.uint8)
    other[20, 22, 15] = 2
    bad = write_nifti(tmp_path / "bad_grid.nii.gz", other, dtype=np.uint8)
    with pytest.raises(InputError, match=r"--scan: .*bad_grid.nii.gz is on another grid") as e:
        load_patient(**dict(f, scans=[f"{bad}@0"]))  # type: ignore[arg-type]
    assert "\n" not in str(e.value)
    shifted = AFFINE.copy()
    shifted[0, 3] += 0.5
    bad = write_nifti(tmp_path / "bad_aff.nii.gz", _seg(5, 2), shifted, np.uint8)
    with pytest.raises(InputError, match=r"bad_aff.nii.gz has another affine"):
        load_patient(**dict(f, scans=[f"{bad}@0"]))  # type: ignore[arg-type]
    with pytest.raises(InputError, match=r"--recurrence: .*bad_aff.nii.gz has another affine"):
        load_patient(**f, recurrence=str(bad))  # type: ignore[arg-type]
    csf = write_nifti(tmp_path / "csf_bad.nii.gz", _maps()["csf"], shifted)
    with pytest.raises(InputError, match=r"--csf: .*csf_bad.nii.gz has another affine"):
        load_patient(**dict(f, csf=str(csf)))  # type: ignore[arg-type]


def test_empty_segmentation_and_days(tmp_path: Path) -> None:
    f = _flags(tmp_path, [(np.zeros(SHAPE, np.uint8), 0.0)])
    with pytest.raises(InputError, match=r"--scan: no tumour labels in .*seg0.nii.gz"):
        load_patient(**f)  # type: ignore[arg-type]
    f = _flags(tmp_path / "b", [(_seg(5, 2), 30.0), (_seg(6, 3), 30.0)])
    with pytest.raises(InputError, match="scan days must be strictly increasing, got 30 .* 30"):
        load_patient(**f)  # type: ignore[arg-type]
    with pytest.raises(InputError, match="give at least one --scan"):
        load_patient(**dict(f, scans=[]))  # type: ignore[arg-type]


def test_labels_detected_over_all_scans(tmp_path: Path) -> None:
    s0 = _seg(5, 2)
    s0[s0 == 3] = 4  # {1, 2, 4} on its own is ambiguous
    with pytest.raises(InputError, match="ambiguous: brats2021 .* or brats2024post"):
        load_patient(**_flags(tmp_path / "a", [(s0, 0.0)]))  # type: ignore[arg-type]
    p = load_patient(**_flags(tmp_path / "a", [(s0, 0.0)]), labels="brats2021")  # type: ignore
    assert int(p.scans[0].regions.enhancing.sum()) == int((s0 == 4).sum())
    s1 = _seg(6, 3)  # {1, 2, 3}: together with the first, only brats2024post knows {1, 2, 3, 4}
    p = load_patient(**_flags(tmp_path / "b", [(s0, 0.0), (s1, 50.0)]))  # type: ignore[arg-type]
    assert p.convention.name == "brats2024post"
    assert int(p.scans[0].regions.cavity.sum()) == int((s0 == 4).sum())
    s7 = _seg(5, 2)
    s7[s7 == 3] = 7
    with pytest.raises(InputError, match=r"labels \{1, 2, 7\} match no known convention"):
        load_patient(**_flags(tmp_path / "c", [(s7, 0.0)]))  # type: ignore[arg-type]


def test_tumour_outside_brain_and_tumour_tissue(tmp_path: Path) -> None:
    m = _maps()
    tumour = _ball(5, (20.0, 21.5, 14.5))
    m["wm"][tumour] = 0.0  # maps segmented from the patient's scan: tumour labelled CSF
    m["gm"][tumour] = 0.0
    m["csf"][tumour] = 1.0
    d = tmp_path / "p"
    d.mkdir()
    files = {k: str(write_nifti(d / f"{k}.nii.gz", v)) for k, v in m.items()}
    seg = str(write_nifti(d / "seg.nii.gz", _seg(5, 2, (20.0, 21.5, 14.5)), dtype=np.uint8))
    with pytest.raises(InputError, match=r"seg.nii.gz: tumour lies outside the brain mask "
                       r"\(0.0 % inside\); .* use --tumour-tissue wm"):
        load_patient(**files, scans=[f"{seg}@0"])  # type: ignore[arg-type]
    p = load_patient(**files, scans=[f"{seg}@0"], tumour_tissue="wm")  # type: ignore[arg-type]
    whole = p.scans[0].regions.whole
    assert np.all(p.wm[whole] == 1) and np.all(p.gm[whole] == 0) and p.csf is not None
    assert np.all(p.csf[whole] == 0) and p.brain_mask()[whole].all()
    np.testing.assert_array_equal(p.wm[~whole], np.clip(m["wm"], 0, 1)[~whole])
    with pytest.raises(InputError, match="--tumour-tissue must be wm"):
        load_patient(**files, scans=[f"{seg}@0"], tumour_tissue="gm")  # type: ignore[arg-type]


def test_orientation_lps_copy_loads_identically(tmp_path: Path) -> None:
    import nibabel as nib

    segs = [(_seg(5, 2, (18.0, 25.0, 12.0)), 0.0), (_seg(7, 3, (18.0, 25.0, 12.0)), 60.0)]
    ras = load_patient(**_flags(tmp_path / "ras", segs))  # type: ignore[arg-type]
    lps_dir = tmp_path / "lps"
    lps_dir.mkdir()
    flip = np.diag([-1.0, -1.0, 1.0, 1.0])
    out: dict[str, object] = {}
    for name in ("wm", "gm", "csf"):
        img = nib.load(str(tmp_path / "ras" / f"{name}.nii.gz"))
        data = np.asarray(img.dataobj)[::-1, ::-1, :]
        aff = img.affine @ np.array([[-1, 0, 0, SHAPE[0] - 1], [0, -1, 0, SHAPE[1] - 1],
                                     [0, 0, 1, 0], [0, 0, 0, 1]], dtype=float)
        assert np.allclose(np.sign(np.diag(aff)[:3]), np.diag(flip)[:3])  # L, P, S axes
        out[name] = str(write_nifti(lps_dir / f"{name}.nii.gz", data, aff))
    scans = []
    for i, (s, day) in enumerate(segs):
        aff = AFFINE @ np.array([[-1, 0, 0, SHAPE[0] - 1], [0, -1, 0, SHAPE[1] - 1],
                                 [0, 0, 1, 0], [0, 0, 0, 1]], dtype=float)
        scans.append(f"{write_nifti(lps_dir / f'seg{i}.nii.gz', s[::-1, ::-1, :], aff, np.uint8)}"
                     f"@{day:g}")
    lps = load_patient(**out, scans=scans)  # type: ignore[arg-type]
    _same(ras, lps)


def test_anisotropic_spacing(tmp_path: Path) -> None:
    aff = np.diag([0.9, 1.2, 3.0, 1.0])
    aff[:3, 3] = (-10, -20, -30)
    p = load_patient(**_flags(tmp_path, [(_seg(5, 2), 0.0)], aff))  # type: ignore[arg-type]
    assert p.spacing == pytest.approx((0.9, 1.2, 3.0))
    assert p.geometry().spacing == pytest.approx((0.9, 1.2, 3.0))


def test_load_labels_errors(tmp_path: Path) -> None:
    with pytest.raises(InputError, match="--scan: file not found"):
        io.load_labels(tmp_path / "none.nii.gz", "--scan")
    frac = write_nifti(tmp_path / "frac.nii.gz", np.full((3, 3, 3), 0.5))
    with pytest.raises(InputError, match="--scan: .*frac.nii.gz has non-integer label values"):
        io.load_labels(frac, "--scan")
    neg = write_nifti(tmp_path / "neg.nii.gz", -np.ones((3, 3, 3)), dtype=np.int16)
    with pytest.raises(InputError, match="negative label values"):
        io.load_labels(neg, "--scan")
    nan = np.zeros((3, 3, 3))
    nan[1, 1, 1] = np.nan
    with pytest.raises(InputError, match="NaN or Inf"):
        io.load_labels(write_nifti(tmp_path / "nan.nii.gz", nan), "--scan")
    with pytest.raises(InputError, match="expected a 3D label image"):
        io.load_labels(write_nifti(tmp_path / "2d.nii.gz", np.zeros((3, 3, 3, 2))), "--scan")
    (tmp_path / "junk.nii.gz").write_bytes(b"junk")
    with pytest.raises(InputError, match="cannot read"):
        io.load_labels(tmp_path / "junk.nii.gz", "--scan")
    # no /255 scaling, float-stored integers accepted, save round trip (uint8 and int16)
    lab = np.zeros((4, 5, 6), np.int16)
    lab[1, 2, 3], lab[2, 2, 2] = 4, 300
    p = io.save_labels_atomic(tmp_path / "lab.nii.gz", lab, AFFINE)
    back, aff = io.load_labels(p, "x")
    np.testing.assert_array_equal(back, lab)
    np.testing.assert_allclose(aff, AFFINE)
    import nibabel as nib

    assert nib.load(str(p)).get_data_dtype() == np.int16
    small = io.save_labels_atomic(tmp_path / "small.nii.gz", np.minimum(lab, 4), AFFINE)
    assert nib.load(str(small)).get_data_dtype() == np.uint8
    with pytest.raises(InputError, match="exists; use --force"):
        io.save_labels_atomic(small, lab, AFFINE)
    back, _ = io.load_labels(write_nifti(tmp_path / "f.nii.gz", np.minimum(lab, 4)), "x")
    assert back.dtype == np.int16 and back.flags.c_contiguous and int(back.max()) == 4


# ---------------------------------------------------------------- the steps of load_patient alone

def test_folder_layout_and_files(tmp_path: Path) -> None:
    s0, s1, rec = _seg(5, 2.5), _seg(7, 4), _seg(9, 6)
    d = _predictgbm(tmp_path / "pg", [(s0, 10.0), (s1, 100.0)], rec)
    assert folder_layout(d) == "predictgbm"
    f = folder_files(d)
    assert f.wm == d / "tissue_segmentation" / "wm_pbmap.nii.gz"
    assert f.csf == d / "tissue_segmentation" / "csf_pbmap.nii.gz"
    assert [(s.path.name, s.day) for s in f.scans] == [("tumor_seg.nii.gz", 10.0),
                                                       ("tumor_seg_day100.nii.gz", 100.0)]
    assert f.recurrence is not None and f.recurrence.path.name == "recurrence_preop.nii.gz"
    assert np.isnan(f.recurrence.day) and f.roles == FOLDER_ROLES and f.source == str(d)
    assert f.labels is None
    (d / "scans.json").write_text(json.dumps({"scans": [{"file": "a.nii.gz", "day": 3}],
                                              "recurrence": {"file": "r.nii.gz", "day": 9},
                                              "labels": "tum"}))
    f = folder_files(d)
    assert f.scans == (SegFile(d / "a.nii.gz", 3.0),) and f.recurrence == SegFile(d / "r.nii.gz", 9.0)
    assert f.labels == "tum"
    (d / "scans.json").write_text(json.dumps({"scans": [{"file": "a.nii.gz", "day": True}]}))
    with pytest.raises(InputError, match=r"scan a.nii.gz needs a numeric \"day\""):
        folder_files(d)
    (d / "scans.json").write_text("{")
    with pytest.raises(InputError, match="cannot read .*scans.json as JSON"):
        folder_files(d)
    c = tmp_path / "c"
    c.mkdir()
    (c / "00007-wm.nii").write_bytes(b"")
    assert folder_layout(c) == "container:00007"
    f = folder_files(c)
    assert f.wm == c / "00007-wm.nii" and f.gm == c / "00007-gm.nii.gz" and f.csf is None
    assert f.scans == (SegFile(c / "00007-tumorseg.nii.gz", 0.0),)
    (c / "00008-wm.nii.gz").write_bytes(b"")
    with pytest.raises(InputError, match=r"several container-layout patients \(00007, 00008\)"):
        folder_layout(c)
    with pytest.raises(InputError, match="--patient: not a folder"):
        folder_layout(c / "00007-wm.nii")


def test_patient_files_roles_and_recurrence(tmp_path: Path) -> None:
    d = _predictgbm(tmp_path / "pg", [(_seg(5, 2), 0.0)], _seg(7, 3))
    f = patient_files(patient_dir=d, recurrence="later.nii.gz@300")
    assert f.recurrence == SegFile(Path("later.nii.gz"), 300.0)
    assert f.roles == Roles("--patient", "--patient", "--patient", "--patient", "--recurrence")
    f = patient_files(wm="w.nii", gm="g.nii", scans="s.nii@4", recurrence="r.nii")
    assert f.roles == Roles() and f.scans == (SegFile(Path("s.nii"), 4.0),)
    assert f.csf is None and f.source == "w.nii, g.nii" and f.recurrence is not None
    assert f.recurrence.path == Path("r.nii") and np.isnan(f.recurrence.day)
    with pytest.raises(InputError, match="--patient: do not combine with --csf, --scan"):
        patient_files(patient_dir=d, csf="c.nii", scans=["s.nii@0"])
    with pytest.raises(InputError, match="give --wm and --gm"):
        patient_files(wm="w.nii", scans=["s.nii@0"])


def test_check_scan_days_alone() -> None:
    def files(*days: float) -> PatientFiles:
        return PatientFiles(Path("w"), Path("g"), None,
                            tuple(SegFile(Path(f"s{i}"), d) for i, d in enumerate(days)),
                            roles=FOLDER_ROLES)

    check_scan_days(files(0.0, 0.5, 90.0))
    with pytest.raises(InputError, match=r"--patient: day of s1 must be finite, got nan"):
        check_scan_days(files(0.0, float("nan")))
    with pytest.raises(InputError, match=r"strictly increasing, got 90 \(s1\) then 60 \(s2\)"):
        check_scan_days(files(0.0, 90.0, 60.0))


def test_read_maps_and_segmentations_on_one_grid(tmp_path: Path) -> None:
    s0 = _seg(5, 2)
    f = patient_files(**_flags(tmp_path, [(s0, 0.0)]))  # type: ignore[arg-type]
    maps = read_maps(f)
    m = _maps()
    np.testing.assert_array_equal(maps.wm, m["wm"])
    np.testing.assert_array_equal(maps.csf, m["csf"].astype(np.float32))
    assert maps.grid.shape == SHAPE and maps.grid.name == "--wm"
    np.testing.assert_allclose(maps.affine, AFFINE)
    raw, rec = read_segmentations(f, maps.grid)
    assert rec is None and len(raw) == 1 and raw[0].day == 0.0
    np.testing.assert_array_equal(raw[0].labels, s0)
    grid = GridRef("--wm", "wm.nii.gz", SHAPE, AFFINE)
    grid.check("--scan", "x", SHAPE, AFFINE + 5e-4)  # within AFFINE_ATOL
    with pytest.raises(InputError, match=r"--scan: x is on another grid \(shape \(1, 2, 3\)"):
        grid.check("--scan", "x", (1, 2, 3), AFFINE)
    with pytest.raises(InputError, match=r"x has another affine than --wm wm.nii.gz \(max "
                       r"difference 0.01\)"):
        grid.check("--scan", "x", SHAPE, AFFINE + 0.01)
    bad = patient_files(**_flags(tmp_path / "hot", [(s0, 0.0)]))  # type: ignore[arg-type]
    write_nifti(bad.gm, 2.0 * m["gm"])
    with pytest.raises(InputError, match=r"--gm: .*gm.nii.gz values must be tissue fractions"):
        read_maps(bad)


def test_label_convention_and_regions_alone() -> None:
    s0 = _seg(5, 2)
    cav = np.zeros(SHAPE, np.int16)
    cav[3:5, 3:5, 3:5] = 4
    raw = [RawSeg(Path("s0"), 0.0, s0.astype(np.int16))]
    conv = label_convention(raw, None, Roles(), None)
    assert conv.name == "brats2023"
    # the recurrence's values join the detection: {1, 2, 3, 4} is brats2024post
    conv = label_convention(raw, RawSeg(Path("r"), np.nan, cav), Roles(), None)
    assert conv.name == "brats2024post"
    with pytest.raises(InputError, match=r"--recurrence: no tumour labels in r \(all voxels"):
        label_convention(raw, RawSeg(Path("r"), np.nan, np.zeros(SHAPE, np.int16)), Roles(),
                         None)
    scans = make_scans(raw, conv, "--scan")
    assert scans[0].day == 0.0 and scans[0].path == "s0"
    assert int(scans[0].regions.whole.sum()) == int(_ball(5).sum())
    with pytest.raises(InputError, match=r"--scan: no tumour labels in c \(only the resection"):
        make_scans([RawSeg(Path("c"), 0.0, cav)], conv, "--scan")
    with pytest.raises(InputError, match=r"--patient: no tumour labels in r \(only the"):
        make_recurrence(RawSeg(Path("r"), np.nan, cav), conv, "--patient")
    assert make_recurrence(None, conv, "--patient") is None


def test_brain_steps_alone(tmp_path: Path) -> None:
    f = patient_files(**_flags(tmp_path, [(_seg(5, 2), 0.0)]))  # type: ignore[arg-type]
    maps = read_maps(f)
    conv = CONVENTIONS["brats2023"]
    a, b = _seg(3, 1, (8.0, 21.5, 14.5)), _seg(4, 2, (30.0, 21.5, 14.5))
    scans = [Scan(0.0, "a", a, regions(a, conv)), Scan(9.0, "b", b, regions(b, conv))]
    union = (a > 0) | (b > 0)
    wm_before = maps.wm.copy()
    out = tumour_as_white_matter(maps, scans)
    np.testing.assert_array_equal(maps.wm, wm_before)  # the input is left alone
    assert np.all(out.wm[union] == 1) and np.all(out.gm[union] == 0)
    assert out.csf is not None and np.all(out.csf[union] == 0)
    np.testing.assert_array_equal(out.wm[~union], maps.wm[~union])
    assert out.grid is maps.grid
    mask = np.zeros(SHAPE, bool)
    mask[:20] = True  # scan a's tumour (x around 8) is inside, b's (x around 30) is not
    check_inside_brain(scans[:1], mask, "--scan")
    with pytest.raises(InputError, match=r"--scan: b: tumour lies outside the brain mask "
                       r"\(0.0 % inside\)"):
        check_inside_brain(scans, mask, "--scan")


def test_brain_mask_is_built_once(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """load_patient builds the brain mask once; geometry() and brain_mask() reuse it."""
    from gbm.model import geometry
    from gbm.problem.segmentation import patient

    calls = []
    real = geometry.brain_mask

    def counted(*args: np.ndarray) -> np.ndarray:
        calls.append(args[0].shape)
        return real(*args)

    monkeypatch.setattr(geometry, "brain_mask", counted)
    monkeypatch.setattr(patient, "brain_mask", counted)
    p = load_patient(**_flags(tmp_path, [(_seg(5, 2), 0.0)]))  # type: ignore[arg-type]
    g = p.geometry()
    g2 = p.geometry(slice_index=14)
    assert calls == [SHAPE]
    assert p.brain_mask() is p.mask and p.mask.dtype == bool
    np.testing.assert_array_equal(p.mask, real(p.wm, p.gm, p.csf))
    for geom, k in ((g, None), (g2, 14)):
        own = geometry.from_maps(p.wm, p.gm, p.affine, p.csf, slice_index=k)
        assert geom.offset == own.offset and geom.shape == own.shape
        np.testing.assert_array_equal(geom.wm, own.wm)
