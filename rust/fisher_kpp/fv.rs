//! Small finite-volume helpers shared by the 2D/3D solver, `radial.rs` and `observe.rs`:
//!
//! * `harmonic`: the face coefficient a_f = 2 a_i a_j / (a_i + a_j) of two cells with a = D phi
//!   (0 if either is 0, i.e. no flux into an inactive cell);
//! * `whole_steps`: the number of whole steps of a fixed dt that fit in t days, exactly;
//! * `shape_str`: an array shape written as a Python tuple, for messages.

/// Harmonic mean of two non-negative face weights; 0 if either is 0.
#[inline]
pub(crate) fn harmonic(a: f64, b: f64) -> f64 {
    if a > 0.0 && b > 0.0 {
        2.0 * a * b / (a + b)
    } else {
        0.0
    }
}

/// Shape of an array as a Python-style tuple, for messages.
pub(crate) fn shape_str(s: &[usize]) -> String {
    let parts: Vec<String> = s.iter().map(|n| n.to_string()).collect();
    format!("({})", parts.join(", "))
}

/// Largest n with n * dt <= t (0 for t <= 0 or non-finite t), exact in floating point.
pub(crate) fn whole_steps(t: f64, dt: f64) -> u64 {
    if !(t.is_finite() && t > 0.0 && dt > 0.0) {
        return 0;
    }
    let mut n = (t / dt).floor() as u64;
    while (n + 1) as f64 * dt <= t {
        n += 1;
    }
    while n > 0 && n as f64 * dt > t {
        n -= 1;
    }
    n
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn harmonic_mean_and_shapes() {
        assert_eq!(harmonic(1.0, 3.0), 1.5);
        assert_eq!(harmonic(0.0, 3.0), 0.0);
        assert!(harmonic(1e-6, 1.0) <= 2e-6);
        assert_eq!(shape_str(&[3, 4]), "(3, 4)");
    }

    #[test]
    fn whole_steps_is_exact() {
        assert_eq!(whole_steps(1.0, 0.1), 10); // 10 * 0.1 == 1.0 in f64
        assert_eq!(whole_steps(0.3, 0.1), 2); // 3 * 0.1 > 0.3 in f64
        assert_eq!(whole_steps(-1.0, 0.1), 0);
        assert_eq!(whole_steps(f64::NAN, 0.1), 0);
        for (t, dt) in [(300.0, 0.37), (150.0, 1.0 / 3.0), (7.3, 0.2)] {
            let n = whole_steps(t, dt);
            assert!(n as f64 * dt <= t && (n + 1) as f64 * dt > t, "{t} {dt}");
        }
    }
}
