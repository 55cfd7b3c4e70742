"""DCE Kinetics: the Slicer module for quantitative maps from dynamic contrast-enhanced MRI.

The Slicer layer only: module description, parameter node, panel and self-test. The panel
behaviour comes from ``SpatioTemporalCommon.SequenceInputModuleWidget``; computations belong in
``DCEKineticsLib``.
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
# DCEKinetics
#


class DCEKinetics(ScriptedLoadableModule):
    """Uses ScriptedLoadableModule base class, available at:
    https://github.com/Slicer/Slicer/blob/main/Base/Python/slicer/ScriptedLoadableModule.py
    """

    def __init__(self, parent):
        ScriptedLoadableModule.__init__(self, parent)
        self.parent.title = _("DCE Kinetics")
        self.parent.categories = SpatioTemporalCommon.moduleCategories()
        self.parent.dependencies = ["SpatioTemporalCommon", "Sequences"]
        self.parent.contributors = ["SlicerSpatioTemporal developers"]
        purposeText = _("""
<p>DCE Kinetics will turn a dynamic contrast-enhanced MRI series into quantitative and
semi-quantitative maps: signal to concentration conversion (with T1 mapping from variable flip angles),
population and image-derived arterial input functions, the Tofts, extended Tofts, Patlak,
two-compartment exchange, two-compartment uptake and adiabatic tissue homogeneity models (Ktrans, ve,
kep, vp, Fp, PS), curve measures such as time to peak, initial area under the curve and curve type, fit
quality maps with failed voxels marked, and per-segment statistics.</p>
""")
        self.parent.helpText = SpatioTemporalCommon.moduleHelpText(purposeText)
        self.parent.acknowledgementText = SpatioTemporalCommon.acknowledgementText()


#
# DCEKineticsParameterNode
#


@parameterNodeWrapper
class DCEKineticsParameterNode:
    """
    The parameters needed by module.

    inputSequence - The 4D series (a sequence of volumes) to analyse.
    """

    inputSequence: slicer.vtkMRMLSequenceNode


#
# DCEKineticsWidget
#


class DCEKineticsWidget(SpatioTemporalCommon.SequenceInputModuleWidget):
    """Panel of the DCE Kinetics module, loaded from ``Resources/UI/DCEKinetics.ui``."""

    def setup(self) -> None:
        """Called when the user opens the module the first time and the widget is initialized."""
        self.setupSequenceInputPanel(DCEKineticsLogic())


#
# DCEKineticsLogic
#


class DCEKineticsLogic(ScriptedLoadableModuleLogic):
    """Owns the module's parameter node; the computations it will run live in ``DCEKineticsLib``."""

    def getParameterNode(self) -> DCEKineticsParameterNode:
        """The module's parameter node (created on first use)."""
        return DCEKineticsParameterNode(super().getParameterNode())


#
# DCEKineticsTest
#


class DCEKineticsTest(ScriptedLoadableModuleTest):
    """Runs, in the Slicer application, the checks that the headless test suite runs on slicer-core."""

    def setUp(self):
        """Do whatever is needed to reset the state - typically a scene clear will be enough."""
        slicer.mrmlScene.Clear()

    def runTest(self):
        """Run as few or as many tests as needed here."""
        self.setUp()
        self.test_DCEKineticsCommonChecks()

    def test_DCEKineticsCommonChecks(self):
        """The shared series, geometry and storage checks on the application's own scene."""
        from SpatioTemporalCommonLib.selftest import run_common_checks

        self.delayDisplay("Starting the test")
        run_common_checks(SpatioTemporalCommon.slicerContext())
        self.delayDisplay("Test passed")
