"""Checks of the shared plumbing that run both in Slicer (module self-tests) and in pytest.

Each check builds what it needs in the given context's scene; :func:`run_check` removes it again.
"""

from __future__ import annotations

import numpy as np
from slicer.util import arrayFromVolume

from .context import MRMLContext
from .errors import ProcessingCancelled
from .nodes import (
    add_scalar_volume,
    add_segmentation,
    labels_from_segmentation,
    node_ids,
    remove_nodes_added_since,
    scene_rollback,
)
from .sequences import add_volume_sequence, series_from_sequence_node, show_in_browser, volume_geometry
from .synthetic import synthetic_series


def check_sequence_round_trip(context: MRMLContext) -> None:
    """A series written into a sequence node reads back with the same values, times and geometry."""
    series = synthetic_series()
    sequence = add_volume_sequence(context, series.frames, series.times_s, series.geometry, "selftest series")
    back = series_from_sequence_node(sequence)
    assert np.array_equal(back.frames, series.frames), "frame values changed"
    assert np.allclose(back.times_s, series.times_s), "frame times changed"
    assert back.geometry.mismatch(series.geometry) is None, "geometry changed"


def check_result_nodes_keep_geometry(context: MRMLContext) -> None:
    """A derived map and a segmentation land on exactly the input's voxels."""
    series = synthetic_series()
    values = series.frames.mean(axis=0)
    map_node = add_scalar_volume(context, values, series.geometry, "selftest map")
    labels = (values > np.percentile(values, 90)).astype(np.uint8)
    segmentation = add_segmentation(context, labels, series.geometry, "selftest segmentation", {1: "bright"})
    assert volume_geometry(map_node).mismatch(series.geometry) is None, "map geometry differs from input"
    exported = labels_from_segmentation(context, segmentation, map_node)
    assert np.array_equal(exported, labels), "segmentation does not reproduce the labels"
    assert segmentation.GetSegmentation().GetNthSegment(0).GetName() == "bright"


def check_browser_synchronisation(context: MRMLContext) -> None:
    """A result sequence joins the input's browser and shows the same item."""
    series = synthetic_series()
    source = add_volume_sequence(context, series.frames, series.times_s, series.geometry, "selftest input")
    browser = show_in_browser(context, source)
    result = add_volume_sequence(context, series.frames * 2, series.times_s, series.geometry, "selftest result")
    assert show_in_browser(context, result, reference_sequence=source) is browser
    browser.SetSelectedItemNumber(3)
    context.logic("Sequences").UpdateProxyNodesFromSequences(browser)
    assert np.array_equal(arrayFromVolume(browser.GetProxyNode(result)), series.frames[3] * 2)


def check_browser_created_for_the_input(context: MRMLContext) -> None:
    """A result of an input without a browser gets one browser with the input as its master."""
    series = synthetic_series(n_frames=4)
    source = add_volume_sequence(context, series.frames, series.times_s, series.geometry, "selftest input")
    result = add_volume_sequence(context, series.frames + 1, series.times_s, series.geometry, "selftest result")
    browser = show_in_browser(context, result, reference_sequence=source)
    assert browser.GetMasterSequenceNode() is source
    assert browser.IsSynchronizedSequenceNode(result.GetID())


def check_cancellation_leaves_scene_unchanged(context: MRMLContext) -> None:
    """Nodes added by a cancelled job are removed again."""
    before = context.scene.GetNumberOfNodes()
    series = synthetic_series()
    try:
        with scene_rollback(context):
            add_scalar_volume(context, series.frames[0], series.geometry, "selftest partial")
            raise ProcessingCancelled("cancelled by the user")
    except ProcessingCancelled:
        pass
    assert context.scene.GetNumberOfNodes() == before, "a cancelled job left nodes in the scene"


COMMON_CHECKS = (
    check_sequence_round_trip,
    check_result_nodes_keep_geometry,
    check_browser_synchronisation,
    check_browser_created_for_the_input,
    check_cancellation_leaves_scene_unchanged,
)


def run_check(context: MRMLContext, check) -> None:
    """Run one check and remove every node it added, whether it passed or not."""
    before = node_ids(context)
    try:
        check(context)
    finally:
        remove_nodes_added_since(context, before)


def run_common_checks(context: MRMLContext) -> None:
    """Run every check of the shared plumbing; raise AssertionError on the first failure."""
    for check in COMMON_CHECKS:
        run_check(context, check)
