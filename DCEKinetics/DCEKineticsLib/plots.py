"""The curves figure of a DCE analysis: mean tissue concentration, its model fit and the AIF."""

from __future__ import annotations

from pathlib import Path

import numpy as np


def save_curves_figure(path: str | Path, times_s: np.ndarray, tissue_mM: np.ndarray, fit_mM: np.ndarray,
                       aif_mM: np.ndarray, *, model: str, aif_description: str) -> Path:
    """Write a PNG with the mean tissue curve, the fitted model and the plasma AIF (second axis).

    Parameters
    ----------
    times_s : ndarray, shape (T,)
        Frame times (s).
    tissue_mM, fit_mM, aif_mM : ndarray, shape (T,)
        Mean tissue concentration, fitted model curve and plasma AIF (mM).
    model : str
        Model name for the legend.
    aif_description : str
        Source of the AIF for the legend.
    """
    import matplotlib

    matplotlib.use("Agg", force=False)
    from matplotlib import pyplot

    figure, tissue_axis = pyplot.subplots(figsize=(7, 4.2), dpi=110)
    tissue_axis.plot(times_s, tissue_mM, "o", markersize=3.5, color="tab:blue", label="mean tissue (mask)")
    tissue_axis.plot(times_s, fit_mM, "-", color="tab:orange", label=f"{model} fit")
    tissue_axis.set_xlabel("time (s)")
    tissue_axis.set_ylabel("tissue concentration (mM)")
    aif_axis = tissue_axis.twinx()
    aif_axis.plot(times_s, aif_mM, "--", color="tab:red", label=aif_description)
    aif_axis.set_ylabel("plasma AIF (mM)")
    lines = tissue_axis.get_lines() + aif_axis.get_lines()
    tissue_axis.legend(lines, [line.get_label() for line in lines], loc="upper right", fontsize=8)
    figure.tight_layout()
    figure.savefig(path)
    pyplot.close(figure)
    return Path(path)
