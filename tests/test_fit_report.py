"""The typed fit report and what is made from it, without fitting: ``results.json``
(:mod:`gbm.jobs.fit.report`) written and read back, the cohort's row
(:mod:`gbm.jobs.cohort.table`), the one CSV writer (:func:`gbm.io.csv_bytes`), absolute Dw and rho
from an assumption (:mod:`gbm.clinical.identifiability`) and the output days
(:mod:`gbm.clinical.forecasts`)."""

from __future__ import annotations

import csv
import io
import json
import math
from dataclasses import replace

import numpy as np
import pytest
from gbm import io as gio
from gbm.clinical.forecasts import output_days
from gbm.clinical.identifiability import Assumption, absolute
from gbm.clinical.plans import PlanReport
from gbm.clinical.quality import Quality
from gbm.jobs.cohort.table import COLUMNS, columns, row_from_report
from gbm.jobs.fit.config import FitConfig
from gbm.jobs.fit.report import (
    Estimates,
    FitReport,
    Grids,
    PinnReport,
    PlansReport,
    ScanReport,
    SearchReport,
    Stats,
    UncertaintyReport,
)
from gbm.pinn.settings import PinnFitSettings
from gbm.problem.segmentation.unknowns import Physical


def _report(**kw) -> FitReport:
    """A one-scan report with plans, an assumed age and a posterior (values made up)."""
    vol = PlanReport(0.008, 100, 100, 0.8, 0.8, 0.6, 0.1, 12, 0.75, 3, 0.024, 0.5, 6, 0.048)
    r = FitReport(
        method="FD-based fit", identifiability="note",
        estimates=Estimates((1.0, -2.0, 3.5), 2.5, 10.0, 0.675, 0.25, False, 0.15625, 0.025,
                            400.0, "assumed age 400 days at the scan", 62.5, 0.125),
        scans=(ScanReport(0.0, "seg.nii.gz", 0.9, 0.95, 28.5, 71.4, 27.0, 70.0),),
        output_days=(0.0, 100.0), forecast_days_after_last_scan=(100.0,),
        plans=PlansReport(vol, None, 0.0, 15.0, "top-k", "core + 15 mm"), labels="brats2023",
        solves={"global": 24, "local": 6, "posterior": 40},
        seconds={"global": 1.0, "total": 3.0}, misfit=0.01, status="global: done",
        resumed_stages=(), search=SearchReport(("a", "b"), (0.5, 1.0), (0.0, 0.0), (1.0, 2.0)),
        grids=Grids((2.0, 2.0, 2.0), (82, 100, 82), (42, 44, 43), 3, 123), source="patient",
        tumour_tissue=None, config=FitConfig(patient="p", forecast=(100.0,), assume_days=400.0),
        versions={"gbm": "0"}, quality=Quality(0.95, 0.5, None),
        uncertainty=UncertaintyReport(
            "emcee", 0.02, 8.0, 0.4, (4.5, None), 32, Stats(2.5, (2.0, 3.0)),
            Stats(10.0, (9.0, 11.0)), (Stats(1.0, (0.0, 2.0)),) * 3,
            dw=Stats(0.15, (0.1, 0.2)), rho=Stats(0.025, (0.02, 0.03))))
    return replace(r, **kw)


def test_report_round_trips_through_json_in_results_json_order() -> None:
    r = _report()
    d = r.to_json()
    text = json.dumps(d)
    assert FitReport.from_json(json.loads(text)) == r
    assert list(d) == ["method", "estimates", "identifiability", "scans", "output_days",
                       "forecast_days_after_last_scan", "plans", "labels", "solves", "seconds",
                       "misfit", "status", "resumed_stages", "search", "grids", "source",
                       "tumour_tissue", "config", "versions", "units", "uncertainty", "quality"]
    assert d["units"]["dw"] == "mm^2/day" and d["config"]["forecast"] == [100.0]
    assert "pinn_dice_core" not in d["scans"][0]                   # FD fit: no network Dice
    assert list(d["plans"])[:2] == ["voxel_volume_ml", "voxels_standard"]
    assert list(d["plans"])[-4:] == ["plan_day", "margin_mm", "model_plan", "standard_plan"]
    # one scan: Dw and rho come from the assumption and follow the origin's intervals
    assert list(d["uncertainty"])[6:] == ["lambda_mm", "rho_t0", "origin_world_mm", "dw", "rho"]
    assert r.total_solves == 70


def test_report_without_core_with_pinn_and_several_scans() -> None:
    """The other shapes: plans with a note only, the PINN's section and network Dice, a
    posterior with fitted Dw, rho and age (before the origin)."""
    u = _report().uncertainty
    assert u is not None
    r = _report(
        plans=PlansReport(None, "no tumour core", 60.0, 15.0, "top-k", "core + 15 mm"),
        scans=(ScanReport(0.0, "a", 0.9, 0.9, 1.0, 2.0, 1.0, 2.0, 0.8, 0.85),
               ScanReport(60.0, "b", 0.9, 0.9, 1.0, 2.0, 1.0, 2.0, 0.7, 0.75)),
        pinn=PinnReport(10, "max_iters", "cpu", 1, 20.0, 700.0, (1.0, 2.0, 3.0), (0.5, 1.0),
                        512, 512, PinnFitSettings(max_iters=10), 1.5, "outputs"),
        uncertainty=replace(u, t0_days=Stats(400.0, (300.0, 500.0))))
    d = json.loads(json.dumps(r.to_json()))
    assert FitReport.from_json(d) == r
    assert list(d["plans"]) == ["note", "plan_day", "margin_mm", "model_plan", "standard_plan"]
    assert d["scans"][1]["pinn_dice_whole"] == 0.75
    assert d["pinn"]["settings"]["max_iters"] == 10
    assert list(d)[-3:] == ["uncertainty", "pinn", "quality"]
    assert list(d["uncertainty"])[6:] == ["lambda_mm", "rho_t0", "dw", "rho", "t0_days",
                                          "origin_world_mm"]


def test_read_refuses_what_is_not_a_results_json(tmp_path) -> None:
    p = tmp_path / "results.json"
    p.write_text(json.dumps({"method": "x"}))
    with pytest.raises(ValueError, match="not a gbm fit results.json"):
        FitReport.read(p)


def test_cohort_row_from_the_typed_report() -> None:
    r = _report()
    row = row_from_report("p1", "ok", r, 12.5, uncertainty=True)
    assert tuple(row) == columns(True) and columns(False) == COLUMNS
    assert (row["lambda_mm"], row["rho_T"], row["dw"], row["age_days"]) == (2.5, 10.0, 0.15625,
                                                                           400.0)
    assert (row["origin_x_mm"], row["origin_y_mm"], row["origin_z_mm"]) == (1.0, -2.0, 3.5)
    assert row["coverage_standard"] == 0.75 and row["coverage_model"] == 0.5
    assert row["coverage_standard_all"] is None                      # no all-label recurrence
    assert row["model_dice_min"] == 0.95 and row["solves"] == 70 and row["n_scans"] == 1
    assert (row["lambda_mm_lo"], row["lambda_mm_hi"]) == (2.0, 3.0)
    assert row["age_days_lo"] is None                                 # one scan: no age interval
    nocore = row_from_report("p2", "ok", _report(plans=PlansReport(None, "n", 0.0, 15.0, "", "")),
                             None, uncertainty=False)
    assert nocore["coverage_model"] is None and nocore["volume_standard_ml"] is None
    bad = row_from_report("p3", "ok", _report(misfit=math.nan), None)
    assert bad["misfit"] is None                                      # non-finite: missing


def test_csv_bytes_is_the_one_table_format() -> None:
    rows = [{"a": 1.0 / 3.0, "b": None, "c": "x,y", "d": 7},
            {"a": np.float64(2.5e-9), "c": 'say "hi"', "d": True}]
    text = gio.csv_bytes(rows, ["a", "b", "c", "d"]).decode()
    assert text.splitlines()[0] == "a,b,c,d"
    assert text.splitlines()[1] == '0.33333333,,"x,y",7'
    assert text.splitlines()[2] == '2.5e-09,,"say ""hi""",True'
    assert text.endswith("\n") and "\r" not in text
    back = list(csv.DictReader(io.StringIO(text)))
    assert back[0]["c"] == "x,y" and back[1]["c"] == 'say "hi"'
    assert gio.csv_bytes([], ["a"]) == b"a\n"
    assert gio.csv_bytes([{"a": 1.0 / 3.0}], ["a"], digits=6) == b"a\n0.333333\n"


def test_absolute_values_from_an_assumption() -> None:
    """One scan: Dw = lambda^2 rho with rho = rho*T / T (assumed age), or Dw = lambda v / 2,
    rho = v / (2 lambda) (assumed speed v = 2 sqrt(Dw rho)); several scans: the fitted ones."""
    p = Physical(np.zeros(3), 2.0, 10.0, 0.4, 0.1, 100.0, 0.675, 0.25)
    a = absolute(p, 1, Assumption(days=400.0))
    assert a.assumed and a.rho == 10.0 / 400.0 and a.dw == 4.0 * a.rho and a.age_days == 400.0
    q = a.physical(p)
    assert (q.dw, q.rho, q.t0, q.lam, q.rho_t0) == (a.dw, a.rho, 400.0, 2.0, 10.0)
    v = absolute(p, 1, Assumption(speed=0.1))
    assert v.dw * v.rho == pytest.approx((0.1 / 2) ** 2, rel=1e-15)   # 2 sqrt(Dw rho) = v
    assert math.sqrt(v.dw / v.rho) == pytest.approx(2.0, rel=1e-15)   # lambda kept
    assert v.rho * v.age_days == pytest.approx(10.0, rel=1e-15)       # rho*T kept
    none = absolute(p, 1, Assumption())
    assert none.dw is None and not none.assumed and none.physical(p) is p
    fitted = absolute(p, 2, Assumption())
    assert (fitted.dw, fitted.rho, fitted.age_days) == (0.4, 0.1, 100.0)
    assert fitted.physical(p) is p


def test_output_days_are_the_scans_then_the_forecasts_after_the_last() -> None:
    assert output_days([0.0, 60.0], (50.0, 150.0)) == [0.0, 60.0, 110.0, 210.0]
    assert output_days([0.0], ()) == [0.0]
