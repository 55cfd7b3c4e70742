"""Draw the extension icon and the module icons (128 x 128 PNG) with matplotlib.

Run from anywhere: ``python Utilities/make_icons.py``. Each icon is a rounded tile in the module's
colour with a white glyph:

- extension: a stack of volumes offset in time, with a time arrow;
- SpatioTemporalCommon: a stack of volumes with a clock;
- DCEKinetics: a contrast-enhancement curve (fast uptake, wash-out) over the baseline;
- FMRIDynamics: a BOLD response following a block stimulus;
- Echo4DFeatures: a heart outline crossed by a phase wave;
- TumorSegmentation4D: an irregular lesion contour inside breast tissue.

The files are written without a timestamp or software version, so re-running the script on an
unchanged script reproduces them byte for byte with the same matplotlib version.
"""

from __future__ import annotations

import argparse
from collections.abc import Callable
from pathlib import Path

import numpy as np
from matplotlib.axes import Axes
from matplotlib.figure import Figure
from matplotlib.patches import Circle, FancyArrowPatch, FancyBboxPatch, Polygon

ICON_SIZE_PX = 128
DPI = 100
GLYPH = "white"
REPOSITORY_ROOT = Path(__file__).resolve().parents[1]


def new_icon(tile_color: str) -> tuple[Figure, Axes]:
    """Create a transparent 128 x 128 px figure holding a rounded tile.

    Parameters
    ----------
    tile_color : str
        Matplotlib colour of the tile.

    Returns
    -------
    figure, axes
        The figure and its full-size axes, with data coordinates 0..1 on both axes.
    """
    figure = Figure(figsize=(ICON_SIZE_PX / DPI, ICON_SIZE_PX / DPI), dpi=DPI)
    figure.patch.set_alpha(0.0)
    axes = figure.add_axes((0.0, 0.0, 1.0, 1.0))
    axes.set_xlim(0.0, 1.0)
    axes.set_ylim(0.0, 1.0)
    axes.set_aspect("equal")
    axes.axis("off")
    tile = FancyBboxPatch(
        (0.06, 0.06),
        0.88,
        0.88,
        boxstyle="round,pad=0,rounding_size=0.16",
        facecolor=tile_color,
        edgecolor="none",
    )
    axes.add_patch(tile)
    return figure, axes


def save_icon(figure: Figure, path: Path) -> None:
    """Write ``figure`` to ``path`` as a 128 x 128 px PNG with a transparent background."""
    path.parent.mkdir(parents=True, exist_ok=True)
    figure.savefig(path, dpi=DPI, transparent=True, metadata={"Software": None})


def draw_volume_stack(axes: Axes, corner: tuple[float, float], size: float, step: float) -> None:
    """Draw three square frames offset diagonally, the front one filled.

    Parameters
    ----------
    axes : Axes
        Axes in icon coordinates (0..1).
    corner : tuple of float
        Lower-left corner of the back frame.
    size : float
        Side of each frame.
    step : float
        Offset between consecutive frames, towards the lower right.
    """
    for index in range(3):
        x = corner[0] + index * step
        y = corner[1] - index * step
        is_front = index == 2
        axes.add_patch(
            FancyBboxPatch(
                (x, y),
                size,
                size,
                boxstyle="round,pad=0,rounding_size=0.03",
                facecolor=GLYPH if is_front else "none",
                edgecolor=GLYPH,
                linewidth=2.2,
                alpha=1.0 if is_front else 0.55 + 0.2 * index,
            )
        )


def draw_extension(axes: Axes) -> None:
    """A stack of volumes through time with a time arrow underneath."""
    draw_volume_stack(axes, corner=(0.2, 0.44), size=0.34, step=0.1)
    arrow = FancyArrowPatch(
        (0.2, 0.17), (0.82, 0.17), arrowstyle="-|>", mutation_scale=14, color=GLYPH, linewidth=2.4
    )
    axes.add_patch(arrow)
    axes.text(0.84, 0.28, "t", color=GLYPH, fontsize=13, fontweight="bold", ha="center", va="center")


def draw_common(axes: Axes) -> None:
    """A stack of volumes with a clock, the shared plumbing of the modules."""
    draw_volume_stack(axes, corner=(0.16, 0.5), size=0.3, step=0.08)
    center = (0.7, 0.32)
    axes.add_patch(Circle(center, 0.17, facecolor="#56606b", edgecolor=GLYPH, linewidth=2.4))
    axes.plot(
        [center[0], center[0]],
        [center[1], center[1] + 0.11],
        color=GLYPH,
        linewidth=2.4,
        solid_capstyle="round",
    )
    axes.plot(
        [center[0], center[0] + 0.08],
        [center[1], center[1]],
        color=GLYPH,
        linewidth=2.4,
        solid_capstyle="round",
    )


def draw_axes_frame(axes: Axes) -> None:
    """Draw the time and value axes of a small plot inside the tile."""
    axes.plot([0.18, 0.18, 0.84], [0.8, 0.2, 0.2], color=GLYPH, linewidth=2.0, alpha=0.8)


def draw_dce(axes: Axes) -> None:
    """An enhancement curve: baseline, fast uptake, wash-out."""
    draw_axes_frame(axes)
    time = np.linspace(0.0, 1.0, 200)
    arrival = 0.2
    after = np.clip(time - arrival, 0.0, None)
    curve = 0.55 * (1.0 - np.exp(-after / 0.06)) * np.exp(-after / 1.6)
    axes.plot(0.22 + 0.6 * time, 0.28 + curve, color=GLYPH, linewidth=3.2, solid_capstyle="round")
    axes.plot(
        [0.22, 0.82], [0.28 + curve.max()] * 2, color=GLYPH, linewidth=1.2, linestyle=(0, (2, 2)), alpha=0.7
    )


def draw_fmri(axes: Axes) -> None:
    """A BOLD response (smooth, delayed) following a block stimulus."""
    time = np.linspace(0.0, 0.98, 400)
    stimulus = ((time % 0.5) < 0.25).astype(float)
    lag = time[time < 0.3]
    response_kernel = lag**2 * np.exp(-lag / 0.03)
    bold = np.convolve(stimulus, response_kernel / response_kernel.sum())[: time.size]
    x = 0.16 + 0.68 * time
    axes.fill_between(x, 0.18, 0.18 + 0.1 * stimulus, color=GLYPH, alpha=0.45, linewidth=0)
    axes.plot(x, 0.38 + 0.38 * bold, color=GLYPH, linewidth=3.2, solid_capstyle="round")


def draw_echo(axes: Axes) -> None:
    """A heart outline crossed by a local-phase wave."""
    angle = np.linspace(0.0, 2.0 * np.pi, 300)
    heart_x = 16.0 * np.sin(angle) ** 3
    heart_y = 13.0 * np.cos(angle) - 5.0 * np.cos(2 * angle) - 2.0 * np.cos(3 * angle) - np.cos(4 * angle)
    scale = 0.36 / 32.0
    outline = np.column_stack((0.5 + scale * heart_x, 0.53 + scale * heart_y))
    axes.add_patch(Polygon(outline, closed=True, facecolor="none", edgecolor=GLYPH, linewidth=3.0))
    wave_x = np.linspace(0.14, 0.86, 200)
    wave_y = 0.5 + 0.08 * np.sin(2.0 * np.pi * (wave_x - 0.14) / 0.24)
    axes.plot(wave_x, wave_y, color=GLYPH, linewidth=2.0, alpha=0.85, solid_capstyle="round")


def draw_tumor(axes: Axes) -> None:
    """An irregular lesion contour inside a disc of tissue."""
    axes.add_patch(Circle((0.5, 0.5), 0.34, facecolor=GLYPH, edgecolor="none", alpha=0.22))
    angle = np.linspace(0.0, 2.0 * np.pi, 300)
    radius = (
        0.15
        + 0.025 * np.sin(3.0 * angle + 0.5)
        + 0.018 * np.sin(7.0 * angle + 1.3)
        + 0.012 * np.cos(2.0 * angle)
    )
    contour = np.column_stack((0.54 + radius * np.cos(angle), 0.47 + radius * np.sin(angle)))
    axes.add_patch(Polygon(contour, closed=True, facecolor=GLYPH, edgecolor=GLYPH, linewidth=2.6, alpha=0.35))
    axes.add_patch(Polygon(contour, closed=True, facecolor="none", edgecolor=GLYPH, linewidth=2.6))


ICONS: dict[str, tuple[str, Callable[[Axes], None]]] = {
    "SpatioTemporalExtension.png": ("#1f6f78", draw_extension),
    "SpatioTemporalCommon/Resources/Icons/SpatioTemporalCommon.png": ("#56606b", draw_common),
    "DCEKinetics/Resources/Icons/DCEKinetics.png": ("#d9822b", draw_dce),
    "FMRIDynamics/Resources/Icons/FMRIDynamics.png": ("#4b5cc4", draw_fmri),
    "Echo4DFeatures/Resources/Icons/Echo4DFeatures.png": ("#b03a3a", draw_echo),
    "TumorSegmentation4D/Resources/Icons/TumorSegmentation4D.png": ("#2e8b57", draw_tumor),
}
"""Icon path relative to the repository root -> (tile colour, glyph drawing function)."""


def make_icons(root: Path) -> list[Path]:
    """Draw every icon under ``root`` and return the written paths."""
    written = []
    for relative_path, (tile_color, draw_glyph) in ICONS.items():
        figure, axes = new_icon(tile_color)
        draw_glyph(axes)
        path = root / relative_path
        save_icon(figure, path)
        written.append(path)
    return written


def main() -> None:
    """Command line entry point: write the icons into the repository (or ``--root``)."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--root", type=Path, default=REPOSITORY_ROOT, help="repository root to write into")
    for path in make_icons(parser.parse_args().root):
        print(path)


if __name__ == "__main__":
    main()
