"""Tumor Segmentation 4D: the Slicer module for tumour segmentation of multi-phase breast DCE-MRI.

The Slicer layer only: module description, parameter node, panel and self-test. The panel
behaviour comes from ``SpatioTemporalCommon.SequenceInputModuleWidget``; computations belong in
``TumorSegmentation4DLib``.
"""

import slicer
from slicer.i18n import tr as _
from slicer.parameterNodeWrapper import parameterNodeWrapper
from slicer.ScriptedLoadableModule import (
    ScriptedLoadableModule,
    ScriptedLoadableModuleLogic,
    ScriptedLoadableModuleTest,
)

import SpatioTemporalCommon

#
# TumorSegmentation4D
#


class TumorSegmentation4D(ScriptedLoadableModule):
    """Uses ScriptedLoadableModule base class, available at:
    https://github.com/Slicer/Slicer/blob/main/Base/Python/slicer/ScriptedLoadableModule.py
    """

    def __init__(self, parent):
        ScriptedLoadableModule.__init__(self, parent)
        self.parent.title = _("Tumor Segmentation 4D")
        self.parent.categories = SpatioTemporalCommon.moduleCategories()
        self.parent.dependencies = ["SpatioTemporalCommon", "Sequences"]
        self.parent.contributors = ["SlicerSpatioTemporal developers"]
        purposeText = _("""
<p>Tumor Segmentation 4D will segment tumours in multi-phase breast DCE-MRI with a
network that sees the pre-contrast and post-contrast phases together with their acquisition times, so
that the contrast uptake and wash-out over time inform the segmentation. It will output a tumour
segmentation with volume statistics and an optional probability map. It is intended for research, not
for clinical use.</p>
""")
        self.parent.helpText = SpatioTemporalCommon.moduleHelpText(purposeText)
        self.parent.acknowledgementText = SpatioTemporalCommon.acknowledgementText()


#
# TumorSegmentation4DParameterNode
#


@parameterNodeWrapper
class TumorSegmentation4DParameterNode:
    """
    The parameters needed by module.

    inputSequence - The 4D series (a sequence of volumes) to analyse.
    """

    inputSequence: slicer.vtkMRMLSequenceNode


#
# TumorSegmentation4DWidget
#


class TumorSegmentation4DWidget(SpatioTemporalCommon.SequenceInputModuleWidget):
    """Panel of the Tumor Segmentation 4D module, loaded from ``Resources/UI/TumorSegmentation4D.ui``."""

    def setup(self) -> None:
        """Called when the user opens the module the first time and the widget is initialized."""
        self.setupSequenceInputPanel(TumorSegmentation4DLogic())


#
# TumorSegmentation4DLogic
#


class TumorSegmentation4DLogic(ScriptedLoadableModuleLogic):
    """Owns the module's parameter node; the computations it will run live in ``TumorSegmentation4DLib``."""

    def getParameterNode(self) -> TumorSegmentation4DParameterNode:
        """The module's parameter node (created on first use)."""
        return TumorSegmentation4DParameterNode(super().getParameterNode())


#
# TumorSegmentation4DTest
#


class TumorSegmentation4DTest(ScriptedLoadableModuleTest):
    """Runs, in the Slicer application, the checks that the headless test suite runs on slicer-core."""

    def setUp(self):
        """Do whatever is needed to reset the state - typically a scene clear will be enough."""
        slicer.mrmlScene.Clear()

    def runTest(self):
        """Run as few or as many tests as needed here."""
        self.setUp()
        self.test_TumorSegmentation4DCommonChecks()

    def test_TumorSegmentation4DCommonChecks(self):
        """The shared series, geometry and storage checks on the application's own scene."""
        from SpatioTemporalCommonLib.selftest import run_common_checks

        self.delayDisplay("Starting the test")
        run_common_checks(SpatioTemporalCommon.slicerContext())
        self.delayDisplay("Test passed")
