"""Time the Rust FD solver (gbm._core.FisherKpp) against the numpy baseline of the same scheme.

Problem: the embedded ICBM152 2009a atlas (1 mm; the cropped box of gbm.load_geometry, and its
axial slice 99 through the default seed), Cahn-Hilliard phase field (gbm's defaults), Dw 0.13
mm^2/day, Dg = Dw/10, rho 0.025 /day, the paper's Gaussian at gbm.DEFAULT_SEED_WORLD_MM, 150 and
300 days.  Both solvers run the identical scheme (benches/numpy_fd.py, rust/fisher_kpp/mod.rs) in the
same run; the bench checks that their states agree and prints the largest difference.  The numpy
baseline runs in two forms with identical results: in-place ufuncs on preallocated buffers
("inplace", the faster) and plain array expressions ("expr", how numpy solvers are usually written).

Timed: the solver's coefficient set-up + time stepping + the snapshot (partial step) at the final
day; the phase field separately.  2D: best of ``--repeats`` runs.  3D: every case runs in its own
subprocess (peak memory = that process's VmHWM; the increase over the RSS with the inputs loaded is
reported too); Rust best of 3 runs, numpy one 300-day run whose 150-day snapshot gives the 150-day
time (the time step does not depend on the run length).  Also: plain (unfused) vs fused Rust steps
and the memory traffic they imply, against a STREAM-like bandwidth measured with numpy here.

Usage: python benches/bench_fd.py [--quick] [--repeats 10] [--wait-idle 600] [--json out.json]
(--quick: the 2D cases and the Rust 3D 150-day case only.)
"""

from __future__ import annotations

import argparse
import concurrent.futures as cf
import datetime
import json
import os
import platform
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))

DW, RHO, DAYS = 0.13, 0.025, (150.0, 300.0)
#: Bytes per cell and step the Rust kernel streams from DRAM (rust/fisher_kpp/mod.rs header):
#: u read 8 + u write 8 + write-allocate 8 + 3 f32 coefficients 12 + 1/phi 8.
PLAIN_BYTES = 44.0
FUSE = 6
#: The numpy baseline in its two forms (benches/numpy_fd.py): in-place ufuncs / plain expressions.
NUMPY_VARIANTS = ("inplace", "expr")


# ---------------------------------------------------------------------------------------------
# machine and load
# ---------------------------------------------------------------------------------------------

def _proc_kib(field: str) -> float:
    with open("/proc/self/status") as f:
        for line in f:
            if line.startswith(field + ":"):
                return float(line.split()[1])
    return float("nan")


def reset_peak_rss() -> bool:
    """Reset VmHWM to the current RSS (Linux: write 5 to /proc/self/clear_refs)."""
    try:
        with open("/proc/self/clear_refs", "w") as f:
            f.write("5")
        return True
    except OSError:
        return False


def rss_mib() -> float:
    return _proc_kib("VmRSS") / 1024


def peak_mib() -> float:
    return _proc_kib("VmHWM") / 1024


def _busy_seconds() -> float:
    """CPU seconds spent busy by all processes since boot, summed over cores (/proc/stat)."""
    with open("/proc/stat") as f:
        v = [int(x) for x in f.readline().split()[1:9]]
    return (sum(v) - v[3] - v[4]) / os.sysconf("SC_CLK_TCK")


class OthersBusy:
    """Context manager: average number of cores kept busy by processes other than this one and
    its children while the block ran (total busy time from /proc/stat minus our own CPU time)."""

    def __enter__(self) -> OthersBusy:
        self.t0, self.b0, self.own0 = time.perf_counter(), _busy_seconds(), self._own()
        return self

    @staticmethod
    def _own() -> float:
        r = [resource.getrusage(w) for w in (resource.RUSAGE_SELF, resource.RUSAGE_CHILDREN)]
        return sum(x.ru_utime + x.ru_stime for x in r)

    def __exit__(self, *exc: object) -> None:
        wall = time.perf_counter() - self.t0
        other = (_busy_seconds() - self.b0) - (self._own() - self.own0)
        self.cores = max(other, 0.0) / max(wall, 1e-9)


def cpu_busy(seconds: float = 1.0) -> float:
    """CPU cores kept busy by *other* processes while this one sleeps ``seconds`` (/proc/stat)."""
    def read() -> tuple[int, int]:
        with open("/proc/stat") as f:
            v = [int(x) for x in f.readline().split()[1:]]
        idle = v[3] + v[4]
        return sum(v[:8]) - idle, sum(v[:8])
    b0, t0 = read()
    time.sleep(seconds)
    b1, t1 = read()
    ncpu = os.cpu_count() or 1
    return ncpu * (b1 - b0) / max(t1 - t0, 1)


def wait_idle(limit: float, threshold: float = 0.2) -> float:
    """Wait (up to ``limit`` s) until other processes keep < ``threshold`` cores busy; return the
    last sample."""
    t_end = time.monotonic() + limit
    busy = cpu_busy()
    while busy >= threshold and time.monotonic() < t_end:
        time.sleep(5.0)
        busy = cpu_busy()
    return busy


def machine() -> dict:
    import gbm
    import gbm._core as core

    model = "?"
    with open("/proc/cpuinfo") as f:
        for line in f:
            if line.startswith("model name"):
                model = line.split(":", 1)[1].strip()
                break
    flags = open("/proc/cpuinfo").read()
    isa = "AVX-512" if " avx512f" in flags else ("AVX2" if " avx2" in flags else "SSE2")
    try:
        lscpu = subprocess.run(["lscpu"], capture_output=True, text=True).stdout
        info = dict(line.split(":", 1) for line in lscpu.splitlines() if ":" in line)
        fam = f"family {info.get('CPU family', '?').strip()} model {info.get('Model', '?').strip()}"
        l3 = info.get("L3 cache", "?").strip()
    except OSError:
        fam, l3 = "?", "?"
    try:
        rustc = subprocess.run(["rustc", "--version"], capture_output=True,
                               text=True).stdout.strip()
    except OSError:
        rustc = "?"
    mem = _meminfo_gib()
    return {
        "date": datetime.datetime.now().astimezone().strftime("%Y-%m-%d %H:%M %Z"),
        "cpu": f"{model} ({fam}, {isa}, L3 {l3})",
        "cores": os.cpu_count(),
        "memory_gib": mem,
        "rayon_threads": core.num_threads(),
        "python": platform.python_version(),
        "numpy": np.__version__,
        "gbm": gbm.__version__,
        "rustc": rustc,
        "kernel": platform.release(),
    }


def _meminfo_gib() -> float:
    with open("/proc/meminfo") as f:
        for line in f:
            if line.startswith("MemTotal:"):
                return round(float(line.split()[1]) / 2**20, 1)
    return float("nan")


def stream(mib: int = 400, repeats: int = 5) -> dict:
    """STREAM-like bandwidth (GB/s = 1e9 B/s) with numpy on ``mib`` MiB arrays, 1 and 2 threads.

    copy: b[:] = a (8 B read + 8 B written per element; STREAM counts 16 B);
    scale: a *= s in place (8 B read + 8 B written per element).
    Threads split the array in halves (numpy releases the GIL inside these loops).
    """
    n = mib * 2**20 // 8
    a = np.full(n, 1.0)
    b = np.zeros(n)
    out = {}
    for threads in (1, 2):
        parts = np.array_split(np.arange(n), threads)
        bounds = [(int(p[0]), int(p[-1]) + 1) for p in parts]
        with cf.ThreadPoolExecutor(threads) as ex:
            for name, fn in (("copy", lambda lo, hi: np.copyto(b[lo:hi], a[lo:hi])),
                             ("scale", lambda lo, hi: np.multiply(a[lo:hi], 1.0000001,
                                                                  out=a[lo:hi]))):
                best = float("inf")
                for _ in range(repeats):
                    t0 = time.perf_counter()
                    list(ex.map(lambda lh: fn(*lh), bounds))
                    best = min(best, time.perf_counter() - t0)
                out[f"{name}_{threads}t_GBps"] = 16 * n / best / 1e9
    return out


# ---------------------------------------------------------------------------------------------
# workers (one subprocess per 3D case)
# ---------------------------------------------------------------------------------------------

def active_line_cells(phi: np.ndarray, phi_min: float = 1e-3) -> int:
    """Cells inside the active range [first, last] of each line along the last (contiguous) axis:
    the cells the Rust kernel updates each step."""
    act = phi >= phi_min
    any_ = act.any(axis=-1)
    first = np.argmax(act, axis=-1)
    last = act.shape[-1] - 1 - np.argmax(act[..., ::-1], axis=-1)
    return int(((last - first + 1) * any_).sum())


def worker_ch(d: Path) -> dict:
    """Load the 3D atlas geometry, time the Cahn-Hilliard solve, write the FD inputs to ``d``."""
    import gbm

    t0 = time.perf_counter()
    g = gbm.load_geometry()
    t_load = time.perf_counter() - t0
    rss0 = rss_mib()
    reset_peak_rss()
    t0 = time.perf_counter()
    g = g.with_phase_field()
    t_pf = time.perf_counter() - t0
    peak = peak_mib()
    info = g.phase_field_info
    u0 = g.initial_condition(g.world_to_local(gbm.DEFAULT_SEED_WORLD_MM))
    np.save(d / "u0.npy", u0)
    np.save(d / "D.npy", g.diffusivity(DW))
    np.save(d / "phi.npy", g.phi)
    # The full, uncropped 197x233x189 grid (what some peers solve on), same mask.
    full = np.zeros(g.full_shape)
    i0, j0, k0 = g.offset
    nx, ny, nz = g.shape
    full[i0:i0 + nx, j0:j0 + ny, k0:k0 + nz] = g.mask
    import gbm._core as core

    del g
    rss1 = rss_mib()
    reset_peak_rss()
    t0 = time.perf_counter()
    _, info_full = core.phase_field(full, [1.0, 1.0, 1.0])
    t_full = time.perf_counter() - t0
    peak_full = peak_mib()
    return {"load_s": t_load, "pf_s": t_pf, "pf_peak_mib": peak, "pf_rss_before_mib": rss0,
            "shape": list(u0.shape), "pf_steps": info["steps"], "pf_rejected": info["rejected"],
            "pf_stopped": info["stopped"], "pf_change": info["change"],
            "pf_mass_rel_change_unclipped": info["mass_rel_change_unclipped"],
            "pf_volume_rel_diff": info.get("volume_rel_diff"),
            "full_shape": list(full.shape), "full_pf_s": t_full,
            "full_pf_steps": info_full["steps"],
            "full_pf_peak_mib": peak_full, "full_pf_rss_before_mib": rss1}


def worker_rust(d: Path, days: float, repeats: int) -> dict:
    import gbm._core as core

    u0, D, phi = (np.load(d / f"{n}.npy") for n in ("u0", "D", "phi"))
    spacing = [1.0] * u0.ndim
    rss0 = rss_mib()
    reset_peak_rss()
    runs = []
    for r in range(repeats):
        t0 = time.perf_counter()
        s = core.FisherKpp(u0, D, phi, spacing, RHO)
        t1 = time.perf_counter()
        n = s.steps_until(days)
        s.advance(n)
        u = s.state(days)
        t2 = time.perf_counter()
        runs.append((t2 - t0, t1 - t0, t2 - t1))
        if r == 0:
            peak = peak_mib()
            np.save(d / f"rust_{days:g}.npy", u)
        del u
    best = min(runs)
    res = {"days": days, "steps": n, "dt": s.dt, "active": s.active_cells,
           "total_s": best[0], "setup_s": best[1], "step_s": best[2],
           "all_total_s": [x[0] for x in runs], "peak_mib": peak, "rss_before_mib": rss0,
           "line_cells": active_line_cells(phi), "box_cells": int(u0.size)}
    # Plain (unfused) against fused steps: advance(1) takes a plain step, advance(48) fuses 6.
    k = 48
    t0 = time.perf_counter()
    s.advance(k)
    res["fused_s_per_step"] = (time.perf_counter() - t0) / k
    t0 = time.perf_counter()
    for _ in range(k):
        s.advance(1)
    res["plain_s_per_step"] = (time.perf_counter() - t0) / k
    return res


def worker_numpy(d: Path, variant: str, days: list[float]) -> dict:
    from numpy_fd import NumpyFisherKpp

    u0, D, phi = (np.load(d / f"{n}.npy") for n in ("u0", "D", "phi"))
    rss0 = rss_mib()
    reset_peak_rss()
    t0 = time.perf_counter()
    s = NumpyFisherKpp(u0, D, phi, [1.0] * u0.ndim, RHO, inplace=variant == "inplace")
    setup = time.perf_counter() - t0
    out = {"setup_s": setup, "dt": s.dt, "rss_before_mib": rss0, "cases": []}
    saving = 0.0  # time spent writing snapshots, not counted
    for t in days:
        s.advance(s.steps_until(t))
        u = s.state(t)
        t1 = time.perf_counter()
        out["cases"].append({"days": t, "steps": s.steps, "total_s": t1 - t0 - saving})
        np.save(d / f"numpy_{variant}_{t:g}.npy", u)
        del u
        saving += time.perf_counter() - t1
    out["peak_mib"] = peak_mib()
    return out


def run_worker(args: list[str]) -> dict:
    """Run one case in a fresh subprocess; adds ``others_busy``: cores used by other processes
    meanwhile."""
    cmd = [sys.executable, str(Path(__file__).resolve()), "--worker", *args]
    with OthersBusy() as ob:
        p = subprocess.run(cmd, capture_output=True, text=True)
    if p.returncode != 0:
        raise RuntimeError(f"worker {args} failed:\n{p.stderr}")
    r = json.loads(p.stdout.strip().splitlines()[-1])
    r["others_busy"] = ob.cores
    return r


# ---------------------------------------------------------------------------------------------
# 2D (in process)
# ---------------------------------------------------------------------------------------------

def bench_2d(repeats: int) -> dict:
    import gbm
    import gbm._core as core
    from numpy_fd import NumpyFisherKpp

    g = gbm.load_geometry(slice_index=gbm.DEFAULT_SLICE)
    pf = []
    for _ in range(3):
        t0 = time.perf_counter()
        gp = g.with_phase_field()
        pf.append(time.perf_counter() - t0)
    g = gp
    u0 = g.initial_condition(g.world_to_local(gbm.DEFAULT_SEED_WORLD_MM))
    D = g.diffusivity(DW)
    sp = list(g.spacing)
    res = {"shape": list(g.shape), "pf_s": min(pf), "pf_steps": g.phase_field_info["steps"],
           "cases": []}
    for days in DAYS:
        tr = []
        for _ in range(repeats):
            t0 = time.perf_counter()
            s = core.FisherKpp(u0, D, g.phi, sp, RHO)
            s.advance(s.steps_until(days))
            ur = s.state(days)
            tr.append(time.perf_counter() - t0)
        c = {"days": days, "steps": s.steps, "dt": s.dt, "active": s.active_cells,
             "rust_s": min(tr), "rust_median_s": float(np.median(tr))}
        for variant in NUMPY_VARIANTS:
            tn = []
            for _ in range(max(3, repeats // 4)):
                t0 = time.perf_counter()
                b = NumpyFisherKpp(u0, D, g.phi, sp, RHO, inplace=variant == "inplace")
                b.advance(b.steps_until(days))
                un = b.state(days)
                tn.append(time.perf_counter() - t0)
            assert b.dt == s.dt and b.steps == s.steps
            c[variant] = {"numpy_s": min(tn), "ratio": min(tn) / min(tr),
                          "max_abs_diff": float(np.abs(ur - un).max()),
                          "cells_differing": int((ur != un).sum())}
        res["cases"].append(c)
    return res


# ---------------------------------------------------------------------------------------------
# main
# ---------------------------------------------------------------------------------------------

def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--quick", action="store_true",
                    help="2D cases and the Rust 3D 150-day case only")
    ap.add_argument("--repeats", type=int, default=10, help="repeats of each 2D Rust case")
    ap.add_argument("--json", type=Path, default=None, help="also write all figures here")
    ap.add_argument("--wait-idle", type=float, default=0.0, metavar="S",
                    help="before each timed part wait up to S seconds for other processes to "
                         "use < 0.2 cores")
    ap.add_argument("--worker", nargs="+", help=argparse.SUPPRESS)
    args = ap.parse_args(argv)

    if args.worker:
        kind, d = args.worker[0], Path(args.worker[1])
        if kind == "ch":
            r = worker_ch(d)
        elif kind == "rust":
            r = worker_rust(d, float(args.worker[2]), int(args.worker[3]))
        else:
            r = worker_numpy(d, args.worker[2], [float(x) for x in args.worker[3:]])
        print(json.dumps(r))
        return 0

    m = machine()
    print(f"date {m['date']}; {m['cpu']}, {m['cores']} cores, {m['memory_gib']} GiB; rayon threads "
          f"{m['rayon_threads']}; Python {m['python']}, numpy {m['numpy']}, gbm {m['gbm']}, "
          f"{m['rustc']}")
    out: dict = {"machine": m, "command": " ".join(["python", "benches/bench_fd.py",
                                                    *(argv if argv is not None else sys.argv[1:])])}
    busy = cpu_busy()
    print(f"load average {os.getloadavg()}, other processes busy {busy:.2f} cores (1 s sample)")
    out["load_start"] = {"loadavg": os.getloadavg(), "busy_cores": busy}

    print("\n== 2D axial slice 99 (in process) ==")
    out["busy_before_2d"] = wait_idle(args.wait_idle)
    with OthersBusy() as ob:
        r2 = bench_2d(args.repeats)
    r2["others_busy"] = ob.cores
    out["2d"] = r2
    print(f"shape {tuple(r2['shape'])}, phase field {r2['pf_s'] * 1e3:.1f} ms "
          f"({r2['pf_steps']} steps), best of 3 [other processes busy {ob.cores:.2f} cores "
          f"meanwhile]")
    for c in r2["cases"]:
        print(f"  {c['days']:.0f} d: steps {c['steps']}, dt {c['dt']:.4f} d, "
              f"Rust {c['rust_s'] * 1e3:.2f} ms (median {c['rust_median_s'] * 1e3:.2f})")
        for v in NUMPY_VARIANTS:
            n = c[v]
            print(f"    numpy {v} {n['numpy_s'] * 1e3:.1f} ms, ratio {n['ratio']:.1f}x, max |diff| "
                  f"{n['max_abs_diff']:.1e} ({n['cells_differing']} cells differ)")

    with tempfile.TemporaryDirectory(prefix="bench_fd_") as tmp:
        d = Path(tmp)
        print("\n== 3D (one subprocess per case) ==")
        out["busy_before_ch"] = wait_idle(args.wait_idle)
        ch = run_worker(["ch", str(d)])
        out["ch"] = ch
        print(f"atlas load {ch['load_s']:.2f} s; Cahn-Hilliard on the box {tuple(ch['shape'])}: "
              f"{ch['pf_s']:.2f} s, {ch['pf_steps']} steps (+{ch['pf_rejected']} retried), stopped "
              f"{ch['pf_stopped']}, peak RSS {ch['pf_peak_mib']:.0f} MiB (before "
              f"{ch['pf_rss_before_mib']:.0f}); on the full grid {tuple(ch['full_shape'])}: "
              f"{ch['full_pf_s']:.2f} s, {ch['full_pf_steps']} steps, peak "
              f"{ch['full_pf_peak_mib']:.0f} MiB (before {ch['full_pf_rss_before_mib']:.0f}) "
              f"[other processes busy {ch['others_busy']:.2f} cores meanwhile]")
        out["3d_rust"] = []
        for days in (DAYS[:1] if args.quick else DAYS):
            busy = wait_idle(args.wait_idle)
            r = run_worker(["rust", str(d), str(days), "3"])
            r["busy_cores"] = busy
            out["3d_rust"].append(r)
            print(f"  Rust {days:.0f} d: {r['total_s']:.3f} s (set-up {r['setup_s']:.3f} + steps "
                  f"{r['step_s']:.3f}; runs {', '.join(f'{x:.3f}' for x in r['all_total_s'])}), "
                  f"steps {r['steps']}, dt {r['dt']:.4f} d, active {r['active']}, peak RSS "
                  f"{r['peak_mib']:.0f} MiB (inputs loaded {r['rss_before_mib']:.0f}) "
                  f"[other processes busy {r['others_busy']:.2f} cores meanwhile]")
        for variant in ([] if args.quick else NUMPY_VARIANTS):
            busy = wait_idle(args.wait_idle)
            nr = run_worker(["numpy", str(d), variant, *[str(x) for x in DAYS]])
            nr["busy_cores"] = busy
            out[f"3d_numpy_{variant}"] = nr
            for c, r in zip(nr["cases"], out["3d_rust"]):
                ur = np.load(d / f"rust_{c['days']:g}.npy")
                un = np.load(d / f"numpy_{variant}_{c['days']:g}.npy")
                c["max_abs_diff"] = float(np.abs(ur - un).max())
                c["cells_differing"] = int((ur != un).sum())
                c["ratio"] = c["total_s"] / r["total_s"]
                assert c["steps"] == r["steps"] and nr["dt"] == r["dt"]
                print(f"  numpy {variant} {c['days']:.0f} d: {c['total_s']:.1f} s "
                      f"(set-up {nr['setup_s']:.2f} s), "
                      f"steps {c['steps']}, ratio numpy/Rust {c['ratio']:.1f}x, max |diff| "
                      f"{c['max_abs_diff']:.1e} ({c['cells_differing']} cells differ)")
            print(f"  numpy {variant} peak RSS {nr['peak_mib']:.0f} MiB (inputs loaded "
                  f"{nr['rss_before_mib']:.0f}) [other processes busy {nr['others_busy']:.2f} "
                  f"cores meanwhile]")

    print("\n== memory bandwidth ==")
    out["busy_before_stream"] = wait_idle(args.wait_idle)
    with OthersBusy() as ob:
        bw = stream()
    out["stream"] = bw
    out["stream_others_busy"] = ob.cores
    print("  numpy STREAM-like, 400 MiB arrays (DRAM; GB/s, 16 B per element): " +
          ", ".join(f"{k[:-5]} {v:.1f}" for k, v in bw.items()) +
          f" [other processes busy {ob.cores:.2f} cores meanwhile]")
    bw_l3 = stream(mib=8, repeats=50)
    out["stream_8mib"] = bw_l3
    print("  the same on 8 MiB arrays (L3-resident, > L2): " +
          ", ".join(f"{k[:-5]} {v:.1f}" for k, v in bw_l3.items()))
    best_bw = max(bw.values())
    r = out["3d_rust"][-1]
    bwf = {}
    for name, per_step, bytes_ in (("plain", r["plain_s_per_step"], PLAIN_BYTES),
                                   ("fused", r["fused_s_per_step"], PLAIN_BYTES / FUSE)):
        ns_line = per_step / r["line_cells"] * 1e9
        gbps = bytes_ * r["line_cells"] / per_step / 1e9
        bwf[name] = {"s_per_step": per_step, "ns_per_line_cell": ns_line,
                     "ns_per_box_cell": per_step / r["box_cells"] * 1e9,
                     "bytes_per_cell": bytes_, "GBps": gbps, "frac_of_stream": gbps / best_bw,
                     "bound_s_per_step": bytes_ * r["line_cells"] / (best_bw * 1e9)}
        print(f"  Rust {name} step: {per_step * 1e3:.2f} ms/step, "
              f"{ns_line:.2f} ns per updated cell "
              f"({r['line_cells']} cells in active lines of {r['box_cells']}), "
              f"{bytes_:.1f} B/cell -> {gbps:.1f} GB/s = {100 * gbps / best_bw:.0f}% of the best "
              f"measured {best_bw:.1f} GB/s; bandwidth bound "
              f"{bwf[name]['bound_s_per_step'] * 1e3:.2f} "
              f"ms/step")
    out["bandwidth"] = bwf
    busy = cpu_busy()
    out["load_end"] = {"loadavg": os.getloadavg(), "busy_cores": busy}
    print(f"\nload average at the end {os.getloadavg()}, other processes busy {busy:.2f} cores")
    if args.json:
        args.json.write_text(json.dumps(out, indent=1))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
