"""Echo 4D Features: the Slicer module for local-phase features and heart volumes in 3D+t echo.

The Slicer layer only: module description, parameter node, panel and self-test. The panel
behaviour it shares with the other modules comes from ``SpatioTemporalCommon.AnalysisModuleWidget``;
the analysis is :func:`Echo4DFeaturesLib.logic.run_echo` and the parameters are defined once, in
:class:`Echo4DFeaturesLib.parameters.EchoParameters`.
"""

from typing import Annotated

import slicer
from Echo4DFeaturesLib.logic import EchoResult, run_echo
from Echo4DFeaturesLib.parameters import EchoParameters, check_parameters
from slicer.i18n import tr as _
from slicer.parameterNodeWrapper import Choice, Default, WithinRange, parameterNodeWrapper
from slicer.ScriptedLoadableModule import (
    ScriptedLoadableModule,
    ScriptedLoadableModuleLogic,
    ScriptedLoadableModuleTest,
)
from SpatioTemporalCommonLib.errors import InputError
from SpatioTemporalCommonLib.parameters import parameter_fields
from SpatioTemporalCommonLib.progress import Progress

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
        self.parent.dependencies = ["SpatioTemporalCommon", "Sequences", "Segmentations", "Plots", "Markups"]
        self.parent.contributors = ["SlicerSpatioTemporal developers"]
        self.parent.helpText = _("""
<p>Echo 4D Features finds the endocardium of the left ventricle in 3D+t echocardiography (a sequence of
volumes, blood dark) from local phase instead of grey level, segments the blood pool over the cardiac
cycle and measures its volume.</p>
<p><b>Inputs.</b> The echo series: at least 3 frames on one grid; anisotropic voxels are handled, since
every filter and distance is in mm. Optional: a point list whose first point (world coordinates) is a
seed in the left-ventricular cavity. Without one the cavity is found automatically: the largest dark
enclosed region near the volume centre.</p>
<p><b>Features.</b> The monogenic signal of a bank of log-Gabor filters (number of scales, smallest
wavelength in mm, wavelength ratio between scales, bandwidth sigma/f0) gives the local phase and the
feature asymmetry, which marks step edges whatever the image contrast, above Kovesi's noise threshold
(k noise standard deviations). In 4d mode the filters run in space and time (the space-time constant
says how many mm one frame counts for), so that edges which are not consistent across consecutive
frames are suppressed; in 3d mode each frame is filtered on its own. The feature asymmetry is oriented:
it keeps the dark-to-bright edges seen from inside the cavity.</p>
<p><b>Segmentation.</b> Along rays from the cavity, the first feature-asymmetry edge above the edge
threshold bounds the blood pool at end-diastole (the frame of largest cavity); drop-out and speckle are
bridged by comparing each ray with its neighbours. The surface is then followed frame to frame, each
wall point moving at most the largest wall motion between frames.</p>
<p><b>Outputs.</b> In a folder named after the series: the feature asymmetry and the local phase (rad)
as volume sequences, the left ventricle as a labelmap sequence (1 = cavity), all three in the series'
sequence browser so that every frame shows its own result; a segmentation of the cavity at
end-diastole; a table and a plot of the cavity volume (ml) against time (against frame numbers when
the series has no frame times). The end-diastolic volume (EDV, the largest), end-systolic volume (ESV,
the smallest), stroke volume (SV = EDV - ESV), ejection fraction (EF = SV / EDV) and the seed used are
shown in the status line; the feature asymmetry is shown over the series at end-diastole, with the
segmentation, and the volume plot in the plot view.</p>
""") + _('<p>See the <a href="{url}">extension documentation</a>.</p>').format(
            url=SpatioTemporalCommon.EXTENSION_HOMEPAGE
        )
        self.parent.acknowledgementText = SpatioTemporalCommon.acknowledgementText()


#
# Echo4DFeaturesParameterNode
#

#: Defaults, choices and ranges of the analysis parameters, read from their one definition.
_DEFAULTS = EchoParameters()
_INFO = {field.name: info for field, info in parameter_fields(EchoParameters)}

#: The parameter-node validator of a widget's range (see ``SpatioTemporalCommon.panelRanges``).
panelRange = SpatioTemporalCommon.panelRanges(EchoParameters)

#: Panel value of ``phase_scale`` that leaves it unset (``None``: the middle scale); scale indices start at 0.
MIDDLE_PHASE_SCALE = -1


@parameterNodeWrapper
class Echo4DFeaturesParameterNode:
    """
    The parameters of the panel.

    Fields named in snake_case are the fields of ``EchoParameters`` with the same meaning and unit;
    ``phase_scale`` is ``MIDDLE_PHASE_SCALE`` where it is not given (``None`` in ``EchoParameters``).

    inputSequence - The 3D+t echo series (a sequence of volumes) to analyse.
    seedNode - Point list whose first control point (RAS, world coordinates) is a seed in the
        left-ventricular cavity; None, or a list without points, finds the cavity automatically.
    """

    inputSequence: slicer.vtkMRMLSequenceNode
    seedNode: slicer.vtkMRMLMarkupsFiducialNode

    mode: Annotated[str, Choice(_INFO["mode"].choices), Default(_DEFAULTS.mode)]
    scales: Annotated[int, panelRange("scales"), Default(_DEFAULTS.scales)]
    min_wavelength_mm: Annotated[
        float, panelRange("min_wavelength_mm", 1), Default(_DEFAULTS.min_wavelength_mm)
    ]
    mult: Annotated[float, panelRange("mult", 2), Default(_DEFAULTS.mult)]
    sigma_onf: Annotated[float, panelRange("sigma_onf", 2), Default(_DEFAULTS.sigma_onf)]
    space_time_mm_per_frame: Annotated[
        float, panelRange("space_time_mm_per_frame", 1), Default(_DEFAULTS.space_time_mm_per_frame)
    ]
    k: Annotated[float, panelRange("k", 1), Default(_DEFAULTS.k)]
    phase_scale: Annotated[
        int, WithinRange(MIDDLE_PHASE_SCALE, _INFO["scales"].maximum - 1), Default(MIDDLE_PHASE_SCALE)
    ]

    fa_threshold: Annotated[float, panelRange("fa_threshold", 2), Default(_DEFAULTS.fa_threshold)]
    max_displacement_mm: Annotated[
        float, panelRange("max_displacement_mm", 1), Default(_DEFAULTS.max_displacement_mm)
    ]
    directions: Annotated[int, panelRange("directions"), Default(_DEFAULTS.directions)]


def analysisParameters(parameterNode: Echo4DFeaturesParameterNode) -> EchoParameters:
    """The validated ``EchoParameters`` the panel describes.

    Raises
    ------
    InputError
        When a value is out of range or the local-phase scale is not one of the filter scales.
    """
    parameters = EchoParameters(
        mode=parameterNode.mode,
        scales=parameterNode.scales,
        min_wavelength_mm=parameterNode.min_wavelength_mm,
        mult=parameterNode.mult,
        sigma_onf=parameterNode.sigma_onf,
        space_time_mm_per_frame=parameterNode.space_time_mm_per_frame,
        k=parameterNode.k,
        fa_threshold=parameterNode.fa_threshold,
        max_displacement_mm=parameterNode.max_displacement_mm,
        directions=parameterNode.directions,
        phase_scale=None if parameterNode.phase_scale == MIDDLE_PHASE_SCALE else parameterNode.phase_scale,
    )
    check_parameters(parameters)
    return parameters


def seedPointRas(markupsNode) -> tuple[float, float, float] | None:
    """The cavity seed: the first control point of a point list, RAS mm in world coordinates.

    ``None`` (the cavity is then found automatically) without a list or when the list has no point.
    """
    if markupsNode is None or markupsNode.GetNumberOfControlPoints() == 0:
        return None
    position = [0.0, 0.0, 0.0]
    markupsNode.GetNthControlPointPositionWorld(0, position)
    return tuple(position)


def missingApplyInputs(parameterNode: Echo4DFeaturesParameterNode) -> list[str]:
    """What the user still has to give before the analysis can run: the series; empty when it can run."""
    return [_("a 4D series")] if parameterNode.inputSequence is None else []


def formatPoint(point) -> str:
    """Coordinates in mm to one decimal, without negative zeros."""
    return ", ".join(f"{round(value, 1) + 0.0:.1f}" for value in point)


def resultSummary(result: EchoResult) -> str:
    """Status text after a run: EDV, ESV, SV, EF, the end-diastolic and end-systolic frames, the seed."""
    analysis = result.analysis
    indices = analysis.indices
    seedText = (
        _("Seed found automatically at R, A, S = ({point}) mm.")
        if analysis.seed_automatic
        else _("Seed given at R, A, S = ({point}) mm.")
    )
    return "\n".join(
        [
            _("EDV {edv:.1f} ml, ESV {esv:.1f} ml, SV {sv:.1f} ml, EF {ef:.1f} %.").format(
                edv=indices.edv_ml, esv=indices.esv_ml, sv=indices.sv_ml, ef=indices.ef_percent
            ),
            _("End-diastole: frame {ed}; end-systole: frame {es} (from 0, as in the volume table).").format(
                ed=indices.ed_frame, es=indices.es_frame
            ),
            seedText.format(point=formatPoint(result.seed_ras)),
        ]
    )


#
# Echo4DFeaturesWidget
#


class Echo4DFeaturesWidget(SpatioTemporalCommon.AnalysisModuleWidget):
    """Panel of the Echo 4D Features module, loaded from ``Resources/UI/Echo4DFeatures.ui``."""

    def setup(self) -> None:
        """Called when the user opens the module the first time and the widget is initialized."""
        self.setupAnalysisPanel(Echo4DFeaturesLogic(), _("Failed to analyse the echo series."))

    def updateWidgetStates(self, caller=None, event=None) -> None:
        """Enable what applies to the current settings; nothing but Cancel while an analysis runs.

        The space-time constant applies to the 4d mode only, and the local-phase scale offers the
        scales of the filter bank.
        """
        parameterNode = self._parameterNode
        missing = missingApplyInputs(parameterNode) if parameterNode else [_("a 4D series")]
        idle = not self.running
        self.updateRunButtons(
            missing,
            _("Compute feature asymmetry and local phase, segment the left ventricle, plot its volume."),
        )
        for section in (
            self.ui.inputsCollapsibleButton,
            self.ui.featuresCollapsibleButton,
            self.ui.segmentationCollapsibleButton,
        ):
            section.enabled = idle
        if parameterNode is None:
            return
        self.ui.spaceTimeSpinBox.enabled = parameterNode.mode == "4d"
        self.ui.phaseScaleSpinBox.maximum = parameterNode.scales - 1

    def showResult(self, result: EchoResult) -> None:
        """Show the indices and the seed, the feature asymmetry over the series and the segmentation at
        end-diastole (also in 3D), and the volume curve in the plot view."""
        self.ui.statusLabel.text = resultSummary(result)
        result.browser.SetSelectedItemNumber(result.analysis.indices.ed_frame)
        self.showMapOverInput(result.browser.GetProxyNode(result.feature_asymmetry_sequence))
        result.lv_segmentation.CreateClosedSurfaceRepresentation()
        slicer.modules.plots.logic().ShowChartInLayout(result.volume_chart)


#
# Echo4DFeaturesLogic
#


class Echo4DFeaturesLogic(ScriptedLoadableModuleLogic):
    """Runs the analysis the panel describes on the application's scene (see ``Echo4DFeaturesLib.logic``)."""

    def getParameterNode(self) -> Echo4DFeaturesParameterNode:
        """The module's parameter node (created on first use)."""
        return Echo4DFeaturesParameterNode(super().getParameterNode())

    def process(
        self, parameterNode: Echo4DFeaturesParameterNode, progress: Progress | None = None
    ) -> EchoResult:
        """Analyse the parameter node's series and add the feature, phase and left-ventricle results to the scene.

        Parameters
        ----------
        parameterNode : Echo4DFeaturesParameterNode
            The series, the optional seed point list and the analysis parameters.
        progress : Progress, optional
            Progress and cancellation; a cancelled run adds nothing to the scene.

        Raises
        ------
        InputError
            When an input or a parameter cannot be used (the message says what to fix).
        """
        if parameterNode.inputSequence is None:
            raise InputError(_("no 4D series selected: choose the sequence of echo volumes to analyse"))
        return run_echo(
            SpatioTemporalCommon.slicerContext(),
            parameterNode.inputSequence,
            analysisParameters(parameterNode),
            seed_ras=seedPointRas(parameterNode.seedNode),
            progress=progress,
        )


#
# Echo4DFeaturesTest
#


class Echo4DFeaturesTest(ScriptedLoadableModuleTest):
    """Runs, in the Slicer application, the checks that the headless test suite runs on slicer-core."""

    #: Frame interval of the phantom series, s (as in ``Testing/echo/test_echo_logic.py``).
    PHANTOM_FRAME_INTERVAL_S = 0.1
    #: Largest error of the ejection fraction, percentage points (as in the headless test).
    EJECTION_FRACTION_TOLERANCE = 3.0

    def setUp(self):
        """Do whatever is needed to reset the state - typically a scene clear will be enough."""
        slicer.mrmlScene.Clear()

    def runTest(self):
        """Run as few or as many tests as needed here."""
        self.setUp()
        self.test_Echo4DFeaturesCommonChecks()
        self.setUp()
        self.test_Echo4DFeaturesPhantomAutomaticSeed()
        self.setUp()
        self.test_Echo4DFeaturesPhantomSeedPoint()

    def test_Echo4DFeaturesCommonChecks(self):
        """The shared series, geometry and storage checks on the application's own scene."""
        from SpatioTemporalCommonLib.selftest import run_common_checks

        self.delayDisplay("Starting the test")
        run_common_checks(SpatioTemporalCommon.slicerContext())
        self.delayDisplay("Test passed")

    def test_Echo4DFeaturesPhantomAutomaticSeed(self):
        """EF of the echo phantom through the parameter node, cavity found automatically.

        The same phantom and tolerance (EF within 3 points, end-diastolic and end-systolic frames
        exact) as ``Testing/echo/test_echo_logic.py``, here through the module logic's ``process``.
        """
        self.delayDisplay("Analysing an echo phantom, automatic seed")
        logic = Echo4DFeaturesLogic()
        parameterNode = logic.getParameterNode()
        phantom, _geometry = self._addPhantomSeries(parameterNode)

        result = logic.process(parameterNode)

        self.assertTrue(result.analysis.seed_automatic)
        self._assertPhantomIndices(result, phantom)
        self.delayDisplay("Test passed")

    def test_Echo4DFeaturesPhantomSeedPoint(self):
        """EF of the echo phantom with the seed given as a point list at the true cavity centre."""
        import numpy as np

        self.delayDisplay("Analysing an echo phantom, seed point")
        logic = Echo4DFeaturesLogic()
        parameterNode = logic.getParameterNode()
        phantom, geometry = self._addPhantomSeries(parameterNode)
        seedNode = slicer.mrmlScene.AddNewNodeByClass("vtkMRMLMarkupsFiducialNode", "LV seed")
        seedNode.AddControlPoint(list(geometry.kji_to_ras(phantom.cavity_centre_kji)))
        parameterNode.seedNode = seedNode

        result = logic.process(parameterNode)

        self.assertFalse(result.analysis.seed_automatic)
        np.testing.assert_allclose(result.analysis.seed_kji, phantom.cavity_centre_kji, atol=1e-6)
        self._assertPhantomIndices(result, phantom)
        self.delayDisplay("Test passed")

    def _addPhantomSeries(self, parameterNode: Echo4DFeaturesParameterNode):
        """Add the headless test's echo phantom to the scene as a sequence and select it as the input.

        Returns the phantom (with its truth) and the geometry of the series.
        """
        import numpy as np
        from Echo4DFeaturesLib.phantom import make_echo_phantom
        from SpatioTemporalCommonLib.sequences import add_volume_sequence
        from SpatioTemporalCommonLib.synthetic import oblique_geometry

        phantom = make_echo_phantom((60, 40, 46), (0.9, 1.3, 1.1), n_frames=8, seed=2)
        geometry = oblique_geometry(phantom.image.shape[:3], spacing_ijk=phantom.spacing_mm[::-1])
        times = np.arange(phantom.image.shape[3]) * self.PHANTOM_FRAME_INTERVAL_S
        parameterNode.inputSequence = add_volume_sequence(
            SpatioTemporalCommon.slicerContext(),
            np.moveaxis(phantom.image, -1, 0),
            times,
            geometry,
            "Echo phantom",
        )
        self.assertEqual(missingApplyInputs(parameterNode), [])
        return phantom, geometry

    def _assertPhantomIndices(self, result: EchoResult, phantom) -> None:
        """EF within the tolerance of the phantom's true EF, and the true end-diastolic and end-systolic frames."""
        volumes = phantom.cavity_volumes_ml
        trueEjectionFraction = 100.0 * (volumes.max() - volumes.min()) / volumes.max()
        indices = result.analysis.indices
        self.assertLess(abs(indices.ef_percent - trueEjectionFraction), self.EJECTION_FRACTION_TOLERANCE)
        self.assertEqual((indices.ed_frame, indices.es_frame), (phantom.ed_frame, phantom.es_frame))
