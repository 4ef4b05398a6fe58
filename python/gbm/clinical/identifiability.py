"""What a patient's scans identify, and absolute Dw, rho and age from an assumption.

With s = rho t the model equation becomes du/ds = div((Dw/rho) phi grad u)/phi + u (1 - u): u at a
scan depends on Dw and rho only through lambda = sqrt(Dw/rho) (mm, the infiltration length) and
rho*T (T = the tumour's age at the scan, days). **One scan** therefore fixes the origin, lambda,
rho*T and the thresholds, and nothing else: absolute values follow only from an assumed age T
(rho = rho*T / T, Dw = lambda^2 rho) or an assumed asymptotic front speed v = 2 sqrt(Dw rho)
(Dw = lambda v / 2, rho = v / (2 lambda), T = rho*T / rho), and are reported as assumptions.
**Two or more scans** with their dates add the time scale: Dw, rho and the age at the first scan
are fitted (:mod:`gbm.inference.segmentation_fit`).

Units: mm, days, Dw mm^2/day, rho 1/day.
"""

from __future__ import annotations

from dataclasses import dataclass, replace

from gbm.problem.segmentation.unknowns import Physical

__all__ = ["IDENTIFIABILITY", "Absolute", "Assumption", "absolute"]

#: The identifiability note of ``gbm fit --help`` and ``results.json``.
IDENTIFIABILITY = (
    "u at a scan depends on Dw and rho only through lambda = sqrt(Dw/rho) and rho*T (T = the "
    "tumour's age at the scan): one scan fixes the origin, lambda, rho*T (and the thresholds); "
    "absolute Dw, rho and forecasts in days need an assumed age or front speed; two or more "
    "scans with dates fix Dw, rho and the age.")


@dataclass(frozen=True)
class Assumption:
    """What one scan needs for absolute values: the tumour's age at the scan (``days``) or its
    asymptotic front speed 2 sqrt(Dw rho) (``speed``, mm/day); at most one of them."""

    days: float | None = None
    speed: float | None = None


@dataclass(frozen=True)
class Absolute:
    """Dw (mm^2/day), rho (1/day) and the age at the first scan (days), each None when the scans
    do not identify it; ``basis`` says where they come from, ``assumed`` whether from an
    :class:`Assumption` (one scan) rather than fitted (several scans)."""

    dw: float | None
    rho: float | None
    age_days: float | None
    basis: str
    assumed: bool = False

    def physical(self, p: Physical) -> Physical:
        """``p`` with the assumed Dw, rho and age in place of its nominal ones (one scan with an
        assumption); ``p`` itself otherwise (fitted values, or none to put in)."""
        if not self.assumed:
            return p
        assert self.dw is not None and self.rho is not None and self.age_days is not None
        return replace(p, dw=self.dw, rho=self.rho, t0=self.age_days)


def absolute(p: Physical, n_scans: int, assumption: Assumption) -> Absolute:
    """Dw, rho and the age at the first scan of a fitted ``p``: fitted (several scans), from the
    assumption (one scan, module header) or unknown (one scan, no assumption)."""
    if n_scans > 1 and p.from_first_scan:
        return Absolute(p.dw, p.rho, p.t0, "fitted from the scan dates, solved from the first "
                        "scan (--start first-scan); age = the paper start's time to the first "
                        "scan's size")
    if n_scans > 1:
        return Absolute(p.dw, p.rho, p.t0, "fitted from the scan dates")
    if assumption.days is not None:
        rho = p.rho_t0 / assumption.days
        return Absolute(p.lam ** 2 * rho, rho, assumption.days,
                        f"assumed age {assumption.days:g} days at the scan", assumed=True)
    if assumption.speed is not None:
        v = assumption.speed
        rho = v / (2 * p.lam)
        return Absolute(p.lam * v / 2, rho, p.rho_t0 / rho,
                        f"assumed front speed {v:g} mm/day", assumed=True)
    return Absolute(None, None, None,
                    "not identifiable from one scan (give --assume-days or --assume-speed)")
