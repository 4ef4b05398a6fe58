"""Figure plumbing: matplotlib's Agg backend and figures as PNG bytes (written atomically by callers)."""

from __future__ import annotations

import io as _io
from typing import Any

#: Resolution of every PNG figure (dots per inch); saved with a tight bounding box.
DPI = 110


def pyplot() -> Any:
    """matplotlib.pyplot with the non-interactive Agg backend."""
    import matplotlib

    matplotlib.use("Agg", force=False)
    import matplotlib.pyplot as plt

    return plt


def figure_bytes(fig: object) -> bytes:
    """A figure as PNG bytes (the figure is closed)."""
    import matplotlib.pyplot as plt

    buf = _io.BytesIO()
    fig.savefig(buf, format="png", dpi=DPI, bbox_inches="tight")  # type: ignore[attr-defined]
    plt.close(fig)  # type: ignore[arg-type]
    return buf.getvalue()
