"""Every user-facing parameter of Tumor Segmentation 4D, defined once (CLI options, logic, Slicer panel).

This file imports no PyTorch, so that the Slicer panel and the command line can be built before the
segmentation packages are installed.
"""

from __future__ import annotations

from dataclasses import dataclass

from SpatioTemporalCommonLib.parameters import parameter

DEVICES = ("auto", "cpu", "cuda")


@dataclass
class SegmentationParameters:
    """Parameters of a tumour segmentation of a multi-phase DCE study (units in the ``unit`` metadata).

    ``phases`` lists 0-based phase indices: pre-contrast, first post-contrast, then one or more later
    post-contrast phases; the network sees (pre, first, later) for each later phase and the
    probabilities are averaged. ``None`` means 0, 1 and every later phase (for three phases: 0, 1, 2).
    """

    phases: tuple[int, ...] | None = parameter(
        None,
        minimum=0,
        metavar="I,J,K",
        help="Pre-contrast, first post-contrast and later phase indices from 0 (more later indices "
        "average the prediction over them; default 0, 1 and every later phase up to the last)",
    )
    device: str = parameter(
        "auto", choices=DEVICES, help="Where the network runs: auto (a CUDA GPU if present), cpu or cuda"
    )
    n4: bool = parameter(True, help="N4 bias-field correction of the phases before segmenting")
    keep_largest: bool = parameter(False, help="Keep only the largest connected tumour component")
    probability: bool = parameter(False, help="Also output the tumour probability map")
    threshold: float = parameter(
        0.5,
        minimum=0,
        maximum=1,
        minimum_inclusive=False,
        maximum_inclusive=False,
        metavar="P",
        help="The tumour probability above which a voxel is labelled tumour",
    )
    overlap: float = parameter(
        0.5,
        minimum=0,
        maximum=1,
        maximum_inclusive=False,
        metavar="F",
        help="The overlap fraction of neighbouring sliding windows",
    )
    roi_size: tuple[int, ...] | None = parameter(
        None,
        unit="voxels",
        minimum=1,
        option="--roi-size",
        metavar="K,J,I",
        help="The sliding-window size at 1 mm, multiples of the network's divisor (default: the "
        "patch size stored with the weights)",
    )
