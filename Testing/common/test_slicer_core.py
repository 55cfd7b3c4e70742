"""The behaviours of the slicer-core wheel that the shared code relies on."""

import subprocess
import sys
import textwrap

import numpy as np
from SpatioTemporalCommonLib.io import read_series, write_node
from SpatioTemporalCommonLib.sequences import add_volume_sequence
from SpatioTemporalCommonLib.synthetic import synthetic_series


def test_context_keeps_the_application_logic_alive(tmp_path):
    """Module logics hold a raw pointer to the application logic: the context must keep it referenced.

    Run in a subprocess, since the failure mode is a segmentation fault.
    """
    script = textwrap.dedent(
        f"""
        import gc
        import numpy as np
        import slicer.util
        from SpatioTemporalCommonLib.context import MRMLContext
        from SpatioTemporalCommonLib.io import write_node
        from SpatioTemporalCommonLib.nodes import add_scalar_volume
        from SpatioTemporalCommonLib.synthetic import oblique_geometry

        context = MRMLContext.create_headless()
        volume_logic = context.logic("Volumes")
        context.application_logic = None  # only the context's logics dict and this script keep it now
        gc.collect()
        geometry = oblique_geometry((3, 4, 5))
        node = add_scalar_volume(context, np.ones((3, 4, 5), np.float32), geometry, "ones")
        write_node(node, r"{tmp_path / 'ones.nrrd'}")
        loaded = volume_logic.AddArchetypeVolume(r"{tmp_path / 'ones.nrrd'}", "loaded")
        assert loaded is not None and slicer.util.arrayFromVolume(loaded).sum() == 60
        """
    )
    result = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, timeout=120, check=False)
    assert result.returncode == 0, result.stderr[-2000:]


def test_sequence_storage_node_in_scene_keeps_labelmap_items(mrml_context, tmp_path):
    """Reading a labelmap sequence through a storage node in the scene keeps the item class."""
    series = synthetic_series(n_frames=3)
    labels = (series.frames > 105).astype(np.uint8)
    sequence = add_volume_sequence(mrml_context, labels, series.times_s, series.geometry, "mask", labelmap=True)
    path = write_node(sequence, tmp_path / "mask.seq.nrrd")
    back, read = read_series(mrml_context, path)
    assert back.GetNthDataNode(0).GetClassName() == "vtkMRMLLabelMapVolumeNode"
    assert np.array_equal(read.frames, labels)
