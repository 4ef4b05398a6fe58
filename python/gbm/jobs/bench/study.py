"""The study behind ``python -m gbm bench`` (see :mod:`gbm.jobs.bench`).

Layout of the output folder::

    report.md, report.json          the report (written last, atomically)
    figures/*.png                   the figures the report links
    runs/<domain>_noise<k>/pinn/    each PINN inference run (gbm infer's folder: checkpoint.pt,
                                    results.json, log.csv, ...)
    runs/<domain>_noise<k>/fd.json  the FD-based fits (Dw, rho) and (Dw, rho, seed), with logs
    runs/disk_extrapolate/          the PINN extrapolation 300 -> 450 d (gbm extrapolate's folder)

With ``resume=True`` an interrupted study continues: finished runs are read back, an interrupted
PINN run continues from its checkpoint (bit-identically on CPU), the rest is redone.

Timing is wall-clock on this machine, in this process: the PINN's figure is its training time
(compile included), the FD fit's its optimisation time; the shared set-up (geometry, phase field,
synthetic observations) is reported separately and counted for neither.

``methods=("fd",)`` (``gbm bench --methods fd``) runs the FD parts alone (the FD-based fits, the
ground-truth checks, the FD extrapolation, the cost model): they need only the core install. The
PINN runs need the optional extra ``pinn`` (torch); without it ``gbm bench`` stops with one line
naming it.
"""

from __future__ import annotations

import dataclasses
import json
import math
import shutil
import sys
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable

from gbm import extras, io
from gbm.errors import require
from gbm.inference.density_fit import FdFitConfig, fit_problem, result_dict
from gbm.jobs.bench import figures, report
from gbm.jobs.bench.metrics import read_log_csv
from gbm.jobs.bench.paper import PAPER
from gbm.model.geometry import DEFAULT_SEED_WORLD_MM, load_geometry
from gbm.model.simulation import simulate
from gbm.pinn.config import InferConfig
from gbm.problem.density.build import build_problem
from gbm.problem.density.config import ProblemConfig
from gbm.provenance import versions as core_versions

__all__ = ["BenchConfig", "run_bench"]

DOMAINS = ("disk", "slice")
METHODS = ("fd", "pinn")


@dataclass(frozen=True)
class BenchConfig:
    """Settings of the study (CLI flags of ``gbm bench`` override a TOML file of these keys).

    quick : small budgets, the whole report in <= 15 minutes on 2 CPU cores.
    domains : "disk" (paper Sec. 3.1) and/or "slice" (Sec. 3.2, embedded atlas slice 99).
    noise : standard deviations of the Gaussian noise on the observations (units of u).
    seed : random seed of observations, noise and networks.
    pinn_optimizer : "lbfgs" (gbm's recipe, see :class:`gbm.pinn.config.InferConfig`) or "adam"
        (the paper's: Adam at 1e-3 on resampled collocation points, the learning rate halved
        half-way, Eq. 11 checks every 1000 epochs).
    pinn_epochs, pinn_fit_iters, check_every, lbfgs_points : the PINN's budget (epochs in all, of
        which data-only L-BFGS iterations; epochs between Eq. 11 checks; L-BFGS collocation
        points). None: for "lbfgs" quick 600 / 150 / 20 / 8000, full 20000 / 500 / 100 / 8000;
        for "adam" quick 1500 / 0 / 50, full the paper's 800,000 / 0 / 1000.
    extrapolate_epochs : L-BFGS iterations of the 300 -> 450 d extrapolation (quick 300, full
        4000).
    fd_fit_seed : also run the FD-based fit with the seed location as unknown.
    fd_max_solves : forward-solve budget of each FD-based fit.
    cost_model_3d : time one 3D forward solve on the atlas for the cost model.
    device, threads, compile : PINN machinery (see ``gbm infer``).
    methods : "fd" (the FD-based fits, always run: every table compares against them) and
        "pinn" (the PINN runs; needs the optional extra ``pinn``).
    """

    quick: bool = False
    domains: tuple[str, ...] = DOMAINS
    noise: tuple[float, ...] = (0.0, 0.01, 0.05)
    seed: int = 0
    pinn_optimizer: str = "lbfgs"
    pinn_epochs: int | None = None
    pinn_fit_iters: int | None = None
    check_every: int | None = None
    lbfgs_points: int | None = None
    extrapolate_epochs: int | None = None
    fd_fit_seed: bool = True
    fd_max_solves: int = 300
    cost_model_3d: bool = True
    device: str = "auto"
    threads: int | None = None
    compile: bool = True
    methods: tuple[str, ...] = METHODS

    @property
    def with_pinn(self) -> bool:
        """Whether the study runs the PINN (``"pinn" in methods``)."""
        return "pinn" in self.methods

    def budgets(self) -> dict[str, int]:
        """The resolved PINN budgets (see the class docstring)."""
        q = self.quick
        if self.pinn_optimizer == "adam":
            b = {"pinn_epochs": 1500 if q else 800_000, "pinn_fit_iters": 0,
                 "check_every": 50 if q else 1000}
        else:
            b = {"pinn_epochs": 600 if q else 20_000, "pinn_fit_iters": 150 if q else 500,
                 "check_every": 20 if q else 100}
        b |= {"lbfgs_points": 8000, "extrapolate_epochs": 300 if q else 4000}
        for k in b:
            v = getattr(self, k)
            if v is not None:
                b[k] = int(v)
        return b

    def validate(self) -> None:
        require(self.pinn_optimizer in ("lbfgs", "adam"),
                f"--pinn-optimizer must be lbfgs or adam, got {self.pinn_optimizer!r}")
        require(len(self.domains) > 0 and all(d in DOMAINS for d in self.domains),
                f"--domains must be a comma-separated subset of {','.join(DOMAINS)}, "
                f"got {','.join(self.domains) or 'nothing'}")
        require(len(self.noise) > 0 and all(math.isfinite(n) and 0 <= n < 1 for n in self.noise),
                f"--noise levels must be in [0, 1), got {self.noise}")
        b = self.budgets()
        require(b["pinn_epochs"] > 0, f"--pinn-epochs must be > 0, got {b['pinn_epochs']}")
        require(0 <= b["pinn_fit_iters"] < b["pinn_epochs"],
                "pinn_fit_iters must be >= 0 and below pinn_epochs")
        require(b["check_every"] > 0, "check_every must be > 0")
        require(b["extrapolate_epochs"] > 0, "--extrapolate-epochs must be > 0")
        require(self.fd_max_solves >= 3, "fd_max_solves must be >= 3")
        require(all(m in METHODS for m in self.methods) and "fd" in self.methods,
                f"--methods must be fd or fd,pinn, got {','.join(self.methods) or 'nothing'}")


def _tag(domain: str, noise: float) -> str:
    return f"{domain}_noise{100 * noise:g}"


class _Study:
    def __init__(self, cfg: BenchConfig, out: Path, resume: bool, say: Callable[[str], None]):
        self.cfg = cfg
        self.out = out
        self.resume = resume
        self.say = say
        self.b = cfg.budgets()
        self.with_pinn = cfg.with_pinn
        self.figures: dict[str, str] = {}

    # ------------------------------------------------------------------ helpers
    def fig(self, name: str, png: bytes, caption: str) -> None:

        io.write_bytes_atomic(self.out / "figures" / name, png, force=True)
        self.figures[name] = caption

    def infer_config(self, domain: str, noise: float) -> Any:

        horizon = PAPER[domain]["horizon"]
        days = (100.0, 200.0, 300.0) if domain == "disk" else (50.0, 100.0, 150.0)
        return InferConfig(
            problem="disk" if domain == "disk" else "atlas", noise=noise, seed=self.cfg.seed,
            horizon=horizon, max_epochs=self.b["pinn_epochs"], fit_iters=self.b["pinn_fit_iters"],
            check_every=self.b["check_every"], lbfgs_points=self.b["lbfgs_points"],
            optimizer=self.cfg.pinn_optimizer,
            halve_every=self.b["pinn_epochs"] // 2 if self.cfg.pinn_optimizer == "adam" else None,
            time_budget=None, tolerances=tuple(PAPER[domain]["rows"]), report_days=days,
            device=self.cfg.device, threads=self.cfg.threads, compile=self.cfg.compile,
            progress_seconds=60.0)

    # ------------------------------------------------------------------ runs
    def fd_fits(self, tag: str, problem: Any, icfg: Any) -> dict[str, Any]:
        """FD-based fits of (Dw, rho) and, optionally, (Dw, rho, seed); cached in fd.json."""

        path = self.out / "runs" / tag / "fd.json"
        if self.resume and path.is_file():
            return json.loads(path.read_text())
        fields = {f.name: getattr(icfg, f.name) for f in dataclasses.fields(ProblemConfig)}
        out: dict[str, Any] = {}
        variants = [("dw_rho", False)] + ([("dw_rho_seed", True)] if self.cfg.fd_fit_seed else [])
        for key, fit_seed in variants:
            fcfg = FdFitConfig(**fields, fit_seed=fit_seed, max_solves=self.cfg.fd_max_solves)
            res, _model = fit_problem(problem, fcfg)
            d = result_dict(problem, fcfg, res)
            d["log"] = res.log
            out[key] = d
            self.say(f"[{tag}] FD fit ({key.replace('_', ', ')}): Dw {res.dw:.5f} "
                     f"({d['dw_error_pct']:+.2f} %), rho {res.rho:.6f} "
                     f"({d['rho_error_pct']:+.2f} %), {res.solves} solves, {res.seconds:.2f} s")
        io.write_json_atomic(path, out, force=True)
        return out

    def pinn(self, tag: str, problem: Any, icfg: Any) -> dict[str, Any]:
        """The PINN inference run (resumed or read back when possible)."""
        from gbm.pinn.inverse import infer  # torch: the PINN is an optional extra

        run = self.out / "runs" / tag / "pinn"
        res_path = run / "results.json"

        def say(m: str) -> None:
            self.say(f"[{tag}] {m}")

        if self.resume and res_path.is_file():
            res = json.loads(res_path.read_text())
        elif self.resume and (run / "checkpoint.pt").is_file():
            res = infer(icfg, run, resume=run, printer=say, problem=problem)
        else:
            res = infer(icfg, run, force=True, printer=say, problem=problem)
        res["log"] = read_log_csv(run / "log.csv")
        return res

    def forward_seconds(self, problem: Any, repeats: int = 3) -> dict[str, Any]:
        """Wall time of one FD forward solve to T at the default time step (best of repeats)."""

        geom = problem.geometry
        best = math.inf
        r = None
        for _ in range(repeats):
            r = simulate(geom, 0.13, 0.025, [0.0, problem.horizon],
                         seed_local=problem.domain.center, ratio=problem.ratio)
            best = min(best, r.seconds)
        assert r is not None
        return {"seconds": best, "steps": r.steps, "dt": r.dt, "shape": list(geom.shape),
                "days": problem.horizon}

    def forward_seconds_3d(self) -> dict[str, Any] | None:
        if not self.cfg.cost_model_3d:
            return None

        t0 = time.perf_counter()
        geom = load_geometry().with_phase_field()
        setup = time.perf_counter() - t0
        best = math.inf
        r = None
        for _ in range(2):
            r = simulate(geom, 0.13, 0.025, [0.0, 150.0], seed_world=DEFAULT_SEED_WORLD_MM)
            best = min(best, r.seconds)
        assert r is not None
        return {"seconds": best, "steps": r.steps, "dt": r.dt, "shape": list(geom.shape),
                "days": 150.0, "setup_seconds": setup}

    # ------------------------------------------------------------------ domains
    def domain(self, domain: str) -> dict[str, Any]:

        d: dict[str, Any] = {"runs": {}}
        clean_radius = None
        for noise in self.cfg.noise:
            tag = _tag(domain, noise)
            icfg = self.infer_config(domain, noise)
            icfg.validate()
            t0 = time.perf_counter()
            if noise > 0:
                # noise lifts u above the automatic region threshold everywhere: the PINN gets
                # the region of the noise-free observations (not counted in anyone's time)
                if clean_radius is None:
                    clean_radius = build_problem(dataclasses.replace(icfg, noise=0.0)).radius
                icfg = dataclasses.replace(icfg, region_radius=clean_radius)
            problem = build_problem(icfg)
            if noise == 0:
                clean_radius = problem.radius
            setup = time.perf_counter() - t0
            self.say(f"[{tag}] {problem.name}: {len(problem.observations)} observations, "
                     f"set-up {setup:.1f} s")
            fd = self.fd_fits(tag, problem, icfg)
            pinn = self.pinn(tag, problem, icfg) if self.with_pinn else None
            d["runs"][f"{noise:g}"] = {"noise": noise, "setup_seconds": setup, "fd": fd,
                                       "pinn": pinn, "tag": tag}
            if noise == self.cfg.noise[0]:
                d["problem"] = problem
                d["forward"] = self.forward_seconds(problem)
        return d


def _prepare(out: Path, force: bool, resume: bool) -> None:

    if out.exists() and not resume:
        if force:
            if out.is_dir():
                shutil.rmtree(out)
            else:
                out.unlink()
        else:
            io.check_output(out, False)
    (out / "runs").mkdir(parents=True, exist_ok=True)
    (out / "figures").mkdir(parents=True, exist_ok=True)


def _machinery(cfg: BenchConfig) -> tuple[str, int | None, dict[str, Any]]:
    """The PINN's device and torch threads, and the versions (torch's too when the PINN runs)."""
    if not cfg.with_pinn:
        return "none (no PINN)", None, core_versions()
    from gbm.pinn.inverse import versions  # torch: the PINN is an optional extra
    from gbm.pinn.train import resolve_device, setup_threads  # torch: as above

    threads = setup_threads(cfg.threads)
    return str(resolve_device(cfg.device)), threads, versions()


def run_bench(cfg: BenchConfig, out: str | Path = "bench", force: bool = False,
              resume: bool = False, printer: Callable[[str], None] | None = None,
              argv: list[str] | None = None) -> dict[str, Any]:
    """Run the study and write the report (see the module docstring).

    Parameters
    ----------
    cfg : BenchConfig
    out : path
        Output folder; refused if it exists, unless ``force`` (discarded) or ``resume``.
    resume : bool
        Continue the interrupted study in ``out`` with its stored settings.
    printer : callable, optional
        Receives progress lines (default: print).
    argv : list of str, optional
        The command line, recorded in the report.

    Returns
    -------
    dict
        The content of ``report.json``.
    """
    say = printer or (lambda m: print(m, flush=True))
    outp = Path(out)
    if resume:
        stored = outp / "bench.json"
        require(stored.is_file(), f"--resume: {outp} holds no interrupted study (no bench.json)")
        vals = json.loads(stored.read_text())
        cfg = BenchConfig(**{k: (tuple(v) if isinstance(v, list) else v) for k, v in vals.items()})
    cfg.validate()
    if cfg.with_pinn:
        extras.require("pinn", "gbm bench with the PINN (--methods fd: the FD parts alone)")
    device, threads, vers = _machinery(cfg)
    _prepare(outp, force, resume)
    io.write_json_atomic(outp / "bench.json", dataclasses.asdict(cfg), force=True)
    t_start = time.perf_counter()
    started = time.strftime("%Y-%m-%d %H:%M:%S %Z")
    st = _Study(cfg, outp, resume, say)
    say(f"gbm bench: {'quick' if cfg.quick else 'full'} study, domains {', '.join(cfg.domains)}, "
        f"noise {', '.join(f'{n:g}' for n in cfg.noise)}, "
        + (f"PINN ({cfg.pinn_optimizer}) {st.b['pinn_epochs']} epochs per run, device {device}, "
           f"{threads} threads" if cfg.with_pinn else "FD-based fits only (no PINN)")
        + f" -> {outp}")
    results: dict[str, Any] = {}
    for domain in cfg.domains:
        d = st.domain(domain)
        if domain == "disk":
            d["extras"] = figures.disk_extras(st, d)
        else:
            d["extras"] = figures.slice_extras(st, d)
        figures.common_figures(st, domain, d)
        results[domain] = d
    fd3d = st.forward_seconds_3d()
    meta = {"started": started, "wall_seconds": time.perf_counter() - t_start,
            "mode": "quick" if cfg.quick else "full", "config": dataclasses.asdict(cfg),
            "budgets": st.b, "device": device, "threads": threads,
            "versions": vers, "command": "python -m gbm " + " ".join(
                argv if argv is not None else sys.argv[1:]),
            "forward_3d": fd3d}
    rep = report.build(results, meta, st.figures)
    io.write_bytes_atomic(outp / "report.md", report.markdown(rep).encode(), force=True)
    io.write_json_atomic(outp / "report.json", rep, force=True)
    say(f"gbm bench: report written to {outp / 'report.md'} after "
        f"{time.perf_counter() - t_start:.0f} s")
    return rep

