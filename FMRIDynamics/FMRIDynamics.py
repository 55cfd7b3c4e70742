"""fMRI Dynamics: the Slicer module for spatio-temporal features of BOLD fMRI.

The Slicer layer only: module description, parameter node, panel and self-test. The panel
behaviour comes from ``SpatioTemporalCommon.SequenceInputModuleWidget``; computations belong in
``FMRIDynamicsLib``.
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
# FMRIDynamics
#


class FMRIDynamics(ScriptedLoadableModule):
    """Uses ScriptedLoadableModule base class, available at:
    https://github.com/Slicer/Slicer/blob/main/Base/Python/slicer/ScriptedLoadableModule.py
    """

    def __init__(self, parent):
        ScriptedLoadableModule.__init__(self, parent)
        self.parent.title = _("fMRI Dynamics")
        self.parent.categories = SpatioTemporalCommon.moduleCategories()
        self.parent.dependencies = ["SpatioTemporalCommon", "Sequences"]
        self.parent.contributors = ["SlicerSpatioTemporal developers"]
        purposeText = _("""
<p>fMRI Dynamics will compute spatio-temporal features of BOLD fMRI: quality measures
(framewise displacement, DVARS, temporal SNR), GLM activation maps with voxel-wise response latency and
width, model-free mutual-information timing maps, lag and latency structure, intrinsic neural
timescales, ALFF and fALFF, regional homogeneity, sample entropy, and static, dynamic and ICA-based
connectivity.</p>
""")
        self.parent.helpText = SpatioTemporalCommon.moduleHelpText(purposeText)
        self.parent.acknowledgementText = SpatioTemporalCommon.acknowledgementText()


#
# FMRIDynamicsParameterNode
#


@parameterNodeWrapper
class FMRIDynamicsParameterNode:
    """
    The parameters needed by module.

    inputSequence - The 4D series (a sequence of volumes) to analyse.
    """

    inputSequence: slicer.vtkMRMLSequenceNode


#
# FMRIDynamicsWidget
#


class FMRIDynamicsWidget(SpatioTemporalCommon.SequenceInputModuleWidget):
    """Panel of the fMRI Dynamics module, loaded from ``Resources/UI/FMRIDynamics.ui``."""

    def setup(self) -> None:
        """Called when the user opens the module the first time and the widget is initialized."""
        self.setupSequenceInputPanel(FMRIDynamicsLogic())


#
# FMRIDynamicsLogic
#


class FMRIDynamicsLogic(ScriptedLoadableModuleLogic):
    """Owns the module's parameter node; the computations it will run live in ``FMRIDynamicsLib``."""

    def getParameterNode(self) -> FMRIDynamicsParameterNode:
        """The module's parameter node (created on first use)."""
        return FMRIDynamicsParameterNode(super().getParameterNode())


#
# FMRIDynamicsTest
#


class FMRIDynamicsTest(ScriptedLoadableModuleTest):
    """Runs, in the Slicer application, the checks that the headless test suite runs on slicer-core."""

    def setUp(self):
        """Do whatever is needed to reset the state - typically a scene clear will be enough."""
        slicer.mrmlScene.Clear()

    def runTest(self):
        """Run as few or as many tests as needed here."""
        self.setUp()
        self.test_FMRIDynamicsCommonChecks()

    def test_FMRIDynamicsCommonChecks(self):
        """The shared series, geometry and storage checks on the application's own scene."""
        from SpatioTemporalCommonLib.selftest import run_common_checks

        self.delayDisplay("Starting the test")
        run_common_checks(SpatioTemporalCommon.slicerContext())
        self.delayDisplay("Test passed")
