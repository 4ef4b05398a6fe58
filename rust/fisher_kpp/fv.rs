//! Small finite-volume helpers shared by the 2D/3D solver, `radial.rs` and `observe.rs`:
//!
//! * `harmonic`: the face coefficient a_f = 2 a_i a_j / (a_i + a_j) of two cells with a = D phi
//!   (0 if either is 0, i.e. no flux into an inactive cell);
//! * `FaceMean`: which mean of the two cells' a the 2D/3D solver puts on a face (harmonic, the
//!   default, or arithmetic (a_i + a_j) / 2 — the choice of some peer solvers; 0 if either is 0);
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

/// Arithmetic mean of two non-negative face weights; 0 if either is 0 (an inactive cell).
#[inline]
pub(crate) fn arithmetic(a: f64, b: f64) -> f64 {
    if a > 0.0 && b > 0.0 {
        0.5 * (a + b)
    } else {
        0.0
    }
}

/// The mean of the two cells' a = D phi that the 2D/3D solver puts on a face. Either way the face
/// is closed (0) when one of its cells is inactive, and both cells use the same value.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum FaceMean {
    /// a_f = 2 a_i a_j / (a_i + a_j): flux continuity across a jump in D phi (see `mod.rs`).
    #[default]
    Harmonic,
    /// a_f = (a_i + a_j) / 2. It can exceed 2 min(a_i, a_j), so next to a small-phi cell the
    /// stable time step can be smaller than with the harmonic mean.
    Arithmetic,
}

impl FaceMean {
    /// Every name `FaceMean::parse` knows.
    pub const NAMES: [&'static str; 2] = ["harmonic", "arithmetic"];

    /// The face value of two cells' a = D phi.
    #[inline]
    pub(crate) fn apply(self, a: f64, b: f64) -> f64 {
        match self {
            FaceMean::Harmonic => harmonic(a, b),
            FaceMean::Arithmetic => arithmetic(a, b),
        }
    }

    /// Lower-case name: "harmonic" or "arithmetic".
    pub fn name(self) -> &'static str {
        match self {
            FaceMean::Harmonic => "harmonic",
            FaceMean::Arithmetic => "arithmetic",
        }
    }

    /// Parse "harmonic" or "arithmetic"; anything else is an `InvalidInput` error naming it.
    pub fn parse(name: &str) -> crate::error::Result<FaceMean> {
        match name {
            "harmonic" => Ok(FaceMean::Harmonic),
            "arithmetic" => Ok(FaceMean::Arithmetic),
            _ => crate::error::invalid(format!(
                "face_mean must be 'harmonic' or 'arithmetic'; got '{name}'"
            )),
        }
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
    fn face_means() {
        assert_eq!(arithmetic(1.0, 3.0), 2.0);
        assert_eq!(arithmetic(0.0, 3.0), 0.0);
        assert_eq!(FaceMean::default(), FaceMean::Harmonic);
        assert_eq!(FaceMean::Harmonic.apply(1.0, 3.0), harmonic(1.0, 3.0));
        assert_eq!(FaceMean::Arithmetic.apply(1.0, 3.0), 2.0);
        for n in FaceMean::NAMES {
            assert_eq!(FaceMean::parse(n).unwrap().name(), n);
        }
        assert!(FaceMean::parse("geometric").is_err());
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
