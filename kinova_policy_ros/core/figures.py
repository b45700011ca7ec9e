"""Figures drawn headless (matplotlib object API, no pyplot) and written atomically."""

import os
from pathlib import Path

from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.figure import Figure


def new_figure(w: float, h: float) -> Figure:
    """Return a figure of ``w`` x ``h`` inches drawn by the Agg backend."""
    fig = Figure(figsize=(w, h))
    FigureCanvasAgg(fig)  # the object API: no pyplot, no global backend state
    return fig


def save_figure(fig: Figure, path: str | os.PathLike[str]) -> Path:
    """Write ``fig`` as PNG atomically (temp file in the same folder, then rename)."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f'.{path.stem}.tmp{path.suffix}')
    try:
        fig.savefig(tmp, dpi=100)
        os.replace(tmp, path)
    except BaseException:
        tmp.unlink(missing_ok=True)  # a failed write leaves neither a partial file nor a temp
        raise
    return path
