"""Echo 4D Features: the Slicer module for local-phase features and heart volumes in 3D+t echo.

The Slicer layer only: module description, parameter node, panel and self-test. The panel
behaviour comes from ``SpatioTemporalCommon.SequenceInputModuleWidget``; computations belong in
``Echo4DFeaturesLib``.
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
# Echo4DFeatures
#


class Echo4DFeatures(ScriptedLoadableModule):
    """Uses ScriptedLoadableModule base class, available at:
    https://github.com/Slicer/Slicer/blob/main/Base/Python/slicer/ScriptedLoadableModule.py
    """

    def __init__(self, parent):
        ScriptedLoadableModule.__init__(self, parent)
        self.parent.title = _("Echo 4D Features")
        self.parent.categories = SpatioTemporalCommon.moduleCategories()
        self.parent.dependencies = ["SpatioTemporalCommon", "Sequences"]
        self.parent.contributors = ["SlicerSpatioTemporal developers"]
        purposeText = _("""
<p>Echo 4D Features will compute the monogenic signal of 3D+t echocardiography (local
amplitude, phase and orientation) and its feature asymmetry, which marks step edges such as the
endocardium independently of image contrast, per frame in 3D or across consecutive frames in 4D. From a
seed point in the cavity it will segment the left ventricle over the cardiac cycle and report the
volume curve, end-diastolic and end-systolic volumes, stroke volume and ejection fraction.</p>
""")
        self.parent.helpText = SpatioTemporalCommon.moduleHelpText(purposeText)
        self.parent.acknowledgementText = SpatioTemporalCommon.acknowledgementText()


#
# Echo4DFeaturesParameterNode
#


@parameterNodeWrapper
class Echo4DFeaturesParameterNode:
    """
    The parameters needed by module.

    inputSequence - The 4D series (a sequence of volumes) to analyse.
    """

    inputSequence: slicer.vtkMRMLSequenceNode


#
# Echo4DFeaturesWidget
#


class Echo4DFeaturesWidget(SpatioTemporalCommon.SequenceInputModuleWidget):
    """Panel of the Echo 4D Features module, loaded from ``Resources/UI/Echo4DFeatures.ui``."""

    def setup(self) -> None:
        """Called when the user opens the module the first time and the widget is initialized."""
        self.setupSequenceInputPanel(Echo4DFeaturesLogic())


#
# Echo4DFeaturesLogic
#


class Echo4DFeaturesLogic(ScriptedLoadableModuleLogic):
    """Owns the module's parameter node; the computations it will run live in ``Echo4DFeaturesLib``."""

    def getParameterNode(self) -> Echo4DFeaturesParameterNode:
        """The module's parameter node (created on first use)."""
        return Echo4DFeaturesParameterNode(super().getParameterNode())


#
# Echo4DFeaturesTest
#


class Echo4DFeaturesTest(ScriptedLoadableModuleTest):
    """Runs, in the Slicer application, the checks that the headless test suite runs on slicer-core."""

    def setUp(self):
        """Do whatever is needed to reset the state - typically a scene clear will be enough."""
        slicer.mrmlScene.Clear()

    def runTest(self):
        """Run as few or as many tests as needed here."""
        self.setUp()
        self.test_Echo4DFeaturesCommonChecks()

    def test_Echo4DFeaturesCommonChecks(self):
        """The shared series, geometry and storage checks on the application's own scene."""
        from SpatioTemporalCommonLib.selftest import run_common_checks

        self.delayDisplay("Starting the test")
        run_common_checks(SpatioTemporalCommon.slicerContext())
        self.delayDisplay("Test passed")
