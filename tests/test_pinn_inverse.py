"""A small PINN inference on CPU recovers Dw and rho (the default L-BFGS recipe, tiny network).

The paper's disk (phi = 0.5 + 0.5 tanh(50 - r), pure white matter), T = 100 days, 3,000 synthetic
observations from the radial FD solver at Dw = 0.13 mm^2/day, rho = 0.025 /day; a 3 x 32 network
with 16 Fourier features; 200 data-only L-BFGS iterations, least-squares initial parameters, then
1,400 joint iterations. Typically ends near -10 % (Dw) and -4 % (rho) in about 20 s.
"""

from __future__ import annotations

from gbm.pinn.config import InferConfig
from gbm.pinn.inverse import infer


def test_small_disk_inference_recovers_parameters(tmp_path) -> None:
    cfg = InferConfig(problem="disk", horizon=100.0, n_obs=3000, width=32, depth=3, fourier=16,
                      sigma_x=0.75, lbfgs_points=2000, fit_iters=200, max_epochs=1600,
                      check_every=100, threads=1, time_budget=None, report_days=(100.0,),
                      progress_seconds=1e9, tolerances=(0.2, 0.1), compile=False)
    res = infer(cfg, tmp_path / "run", printer=lambda m: None)
    assert res["truth"] == {"dw": 0.13, "rho": 0.025}
    assert abs(res["rho_error_pct"]) < 10.0, res["rho_error_pct"]
    assert abs(res["dw_error_pct"]) < 20.0, res["dw_error_pct"]
    # the trained network reproduces the observations and the FD solution at day 100
    assert res["data_mse"] < 1e-5
    assert res["u_vs_reference"]["100"]["mse"] < 1e-4
