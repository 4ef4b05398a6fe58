//! Time the FV Fisher–KPP solver (`rust/fisher_kpp/`) on a synthetic brain-like box: plain steps
//! (the baseline) against temporal blocking, and optionally the instruction sets, in one run.
//!
//! Problem: a ball phase field with a tanh profile (radius `--r` cells, default 70), a smooth
//! white/gray mix of D (0.13 and 0.013 mm^2/day), rho 0.025/day, the paper's Gaussian seed
//! 0.1 exp(-r^2/10) at the centre, 1 mm voxels; 300 days. Timed: set-up (coefficients, dt) and
//! the time stepping plus the final partial step. Every run must give the bit-identical state.
//!
//! ```text
//! cargo bench --bench fk_step                                   # 147x184x157 and 150x185 (2D)
//! cargo bench --bench fk_step -- --shape 147,184,157 --fuse 1,4,6 --isa scalar,auto --r 70
//! ```
//!
//! Prints the machine (CPU model, rayon threads) and, per case, ns per updated cell and the
//! speed-up against the first case of the same shape (the baseline measured in the same run).

use std::time::Instant;

use _core::fisher_kpp::{FisherKpp, FkOptions, Isa};
use _core::grid::Grid;
use ndarray::Array3;

/// Ball phase field (tanh profile), white/gray D mix and a Gaussian seed, as in the unit tests.
fn synthetic(shape: [usize; 3], r_ball: f64) -> (Array3<f64>, Array3<f64>, Array3<f64>) {
    let c = shape.map(|n| (n as f64 - 1.0) / 2.0);
    let r2 = |i: usize, j: usize, k: usize| {
        (i as f64 - c[0]).powi(2) + (j as f64 - c[1]).powi(2) + (k as f64 - c[2]).powi(2)
    };
    let phi = Array3::from_shape_fn(shape, |(i, j, k)| {
        0.5 + 0.5 * ((r_ball - r2(i, j, k).sqrt()) / 1.5).tanh()
    });
    let d = Array3::from_shape_fn(shape, |(i, j, k)| {
        let s = (i as f64 * 0.21).sin() * (j as f64 * 0.17).cos() + (k as f64 * 0.13).sin();
        let pw = 0.5 + 0.5 * s.tanh();
        pw * 0.13 + (1.0 - pw) * 0.013
    });
    let u0 = Array3::from_shape_fn(shape, |(i, j, k)| 0.1 * (-r2(i, j, k) / 10.0).exp());
    (u0, d, phi)
}

struct Args {
    shapes: Vec<[usize; 3]>,
    fuses: Vec<usize>,
    isas: Vec<Option<Isa>>,
    r_ball: f64,
}

fn list<T: std::str::FromStr>(v: &str) -> Vec<T> {
    v.split(',')
        .map(|x| {
            x.trim()
                .parse()
                .unwrap_or_else(|_| panic!("bad value {x:?}"))
        })
        .collect()
}

fn parse_args() -> Args {
    let mut a = Args {
        shapes: vec![[147, 184, 157], [150, 185, 1]],
        fuses: vec![1, 6],
        isas: vec![None],
        r_ball: 70.0,
    };
    let argv: Vec<String> = std::env::args().skip(1).collect();
    let mut it = argv.iter();
    while let Some(flag) = it.next() {
        // `cargo bench` passes `--bench` to every bench binary.
        if flag == "--bench" {
            continue;
        }
        let value = it.next().unwrap_or_else(|| panic!("{flag} needs a value"));
        match flag.as_str() {
            "--shape" => {
                let n: Vec<usize> = list(value);
                assert!(n.len() == 2 || n.len() == 3, "--shape takes nx,ny[,nz]");
                a.shapes = vec![[n[0], n[1], n.get(2).copied().unwrap_or(1)]];
            }
            "--fuse" => a.fuses = list(value),
            "--isa" => {
                a.isas = value
                    .split(',')
                    .map(|n| Isa::parse(n).unwrap_or_else(|e| panic!("--isa: {e}")))
                    .collect()
            }
            "--r" => a.r_ball = value.parse().expect("--r takes a radius in cells"),
            other => panic!("unknown flag {other} (--shape, --fuse, --isa, --r)"),
        }
    }
    a
}

fn cpu_model() -> String {
    std::fs::read_to_string("/proc/cpuinfo")
        .ok()
        .and_then(|s| {
            s.lines()
                .find(|l| l.starts_with("model name"))
                .and_then(|l| l.split(':').nth(1))
                .map(|m| m.trim().to_string())
        })
        .unwrap_or_else(|| std::env::consts::ARCH.to_string())
}

fn main() {
    let args = parse_args();
    println!(
        "machine: {} | rayon threads {} | ISAs available {:?}",
        cpu_model(),
        rayon::current_num_threads(),
        Isa::available()
            .iter()
            .map(|i| i.name())
            .collect::<Vec<_>>()
    );
    for &shape in &args.shapes {
        let (u0, d, phi) = synthetic(shape, args.r_ball);
        let grid = Grid::new(shape, [1.0; 3]).expect("grid");
        let mut reference: Option<(Array3<f64>, f64)> = None;
        for &isa in &args.isas {
            for &fuse in &args.fuses {
                let opts = FkOptions {
                    isa,
                    ..FkOptions::default()
                };
                let t0 = Instant::now();
                let mut s = FisherKpp::new(u0.view(), d.view(), phi.view(), &grid, 0.025, opts)
                    .expect("solver");
                s.set_fused_steps(fuse);
                let setup = t0.elapsed().as_secs_f64();
                let n = s.steps_until(300.0);
                let t1 = Instant::now();
                s.advance(n);
                let u = s.state_at(300.0).expect("snapshot");
                let run = t1.elapsed().as_secs_f64();
                let updates = s.updated_cells() as f64 * n as f64;
                let speedup = reference.as_ref().map_or(1.0, |r| r.1 / run);
                println!(
                    "shape {shape:?} isa {} fuse {fuse}: dt {:.4} d, {n} steps, {} active, \
                     set-up {setup:.3} s, run {run:.3} s = {:.2} ns/updated cell \
                     ({:.2} ns/box cell), x{speedup:.2} vs the first case",
                    s.isa().name(),
                    s.dt(),
                    s.active_cells(),
                    run * 1e9 / updates,
                    run * 1e9 / (n as f64 * grid.len() as f64),
                );
                match &reference {
                    Some((r, _)) => assert_eq!(r, &u, "results differ from the first case"),
                    None => reference = Some((u, run)),
                }
            }
        }
        println!("shape {shape:?}: every case bit-identical");
    }
}
