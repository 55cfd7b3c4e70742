"""DCE Kinetics: the Slicer module for quantitative maps from dynamic contrast-enhanced MRI.

The Slicer layer only: module description, parameter node, panel and self-test. The panel
behaviour it shares with the other modules comes from ``SpatioTemporalCommon.SequenceInputModuleWidget``;
the analysis is :func:`DCEKineticsLib.logic.run_dce` and the parameters are defined once, in
:class:`DCEKineticsLib.parameters.DCEParameters`.
"""

from typing import Annotated, Union

import slicer
from DCEKineticsLib.logic import DCEResult, run_dce, run_t1_mapping
from DCEKineticsLib.models import MODELS
from DCEKineticsLib.parameters import POPULATION_AIF_NAMES, DCEParameters
from slicer.i18n import tr as _
from slicer.parameterNodeWrapper import Choice, Default, Minimum, WithinRange, parameterNodeWrapper
from slicer.ScriptedLoadableModule import (
    ScriptedLoadableModule,
    ScriptedLoadableModuleLogic,
    ScriptedLoadableModuleTest,
)
from SpatioTemporalCommonLib.errors import InputError
from SpatioTemporalCommonLib.parameters import parameter_fields, validate_parameters
from SpatioTemporalCommonLib.progress import Progress
from SpatioTemporalCommonLib.sequences import acquisition_from_attributes

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
        self.parent.dependencies = ["SpatioTemporalCommon", "Sequences", "Plots"]
        self.parent.contributors = ["SlicerSpatioTemporal developers"]
        self.parent.helpText = _("""
<p>DCE Kinetics turns a dynamic contrast-enhanced MRI series (a sequence of volumes) into quantitative
and semi-quantitative maps.</p>
<p><b>Inputs.</b> The series holds MR signal or contrast-agent concentration (mM). Spoiled gradient-echo
signal is converted to concentration with the pre-contrast T1 (one value in ms, or a T1 map), the flip
angle, the repetition time and the relaxivity r1 (/mM/s); the pre-contrast frames are found from the
bolus arrival unless given. A T1 map can be computed in the module from variable-flip-angle images
(linear DESPOT1 or nonlinear fit). An optional mask (label volume or segmentation) limits the fit and
defines the regions of the statistics table.</p>
<p><b>Arterial input.</b> The Parker, Georgiou or Weinmann population curve (blood converted to plasma
with the haematocrit), or an image-derived curve from the most arterial voxels inside an AIF mask.
The arrival delay of each voxel can be fitted (delay map, s).</p>
<p><b>Models and maps.</b> Standard Tofts (Ktrans, ve, kep), extended Tofts (+ vp), Patlak (Ktrans, vp),
two-compartment exchange (Fp, PS, ve, vp, E, Ktrans), two-compartment uptake (Fp, PS, vp, E, Ktrans) and
adiabatic approximation to tissue homogeneity (Fp, PS, ve, vp, Tc, E, Ktrans), with MTT where defined.
Ktrans, kep and PS are in /min, Fp in ml/100ml/min, times in s. Curve measures: time to peak, maximum
and relative enhancement, initial rate, maximum and wash-out slope, iAUC over 60 s and 90 s after
arrival, signal enhancement ratio and curve type (persistent, plateau, wash-out). Fit quality: R2 and
a failure mask; failed voxels are NaN and counted, never set to zero.</p>
<p><b>Outputs.</b> One volume per map in a folder named after the series, a table of the mean, median,
SD and IQR of every map in every mask region, and a plot of the mean concentration curve, its fit and
the arterial input. Ktrans is shown over the series in the slice views.</p>
""") + _('<p>See the <a href="{url}">extension documentation</a>.</p>').format(
            url=SpatioTemporalCommon.EXTENSION_HOMEPAGE
        )
        self.parent.acknowledgementText = SpatioTemporalCommon.acknowledgementText()


#
# DCEKineticsParameterNode
#

#: Defaults, choices and ranges of the analysis parameters, read from their one definition.
_DEFAULTS = DCEParameters()
_INFO = {field.name: info for field, info in parameter_fields(DCEParameters)}

#: The arterial inputs the panel offers: the population curves and the image-derived one.
AIF_CHOICES = (*POPULATION_AIF_NAMES, "auto")

#: Spin-box minimum of a parameter that must be positive, at the precision its widget shows.
POSITIVE_R1_MINIMUM_PER_MM_PER_S = 0.01
POSITIVE_DELAY_MINIMUM_S = 0.1
#: Largest haematocrit at the two decimals its widget shows (the range is [0, 1)).
HEMATOCRIT_MAXIMUM = 0.99


@parameterNodeWrapper
class DCEKineticsParameterNode:
    """
    The parameters of the panel.

    Fields named in snake_case are the fields of ``DCEParameters`` with the same meaning and unit; an
    optional one that is 0 here is not given (``None`` in ``DCEParameters``). The camelCase fields
    are the panel's own: node selections, the resample option and the flip angles as typed.

    Node references use ``typing.Union``: the wrapper recognises node unions only in that form.

    inputSequence - The 4D series (a sequence of volumes) to analyse.
    maskNode - Voxels to fit and regions of the statistics (label volume or segmentation), or None.
    aifMaskNode - Artery searched by the image-derived ("auto") arterial input, or None.
    t1MapNode - Pre-contrast T1 map (ms), used instead of t1_ms when set.
    vfaSequence - Variable-flip-angle images for computing the T1 map.
    resampleMasks - Resample masks and T1 map on another grid instead of refusing them.
    vfaFlipAnglesText - Flip angles of the VFA frames as typed (deg, comma-separated).
    """

    inputSequence: slicer.vtkMRMLSequenceNode
    maskNode: Union[slicer.vtkMRMLScalarVolumeNode, slicer.vtkMRMLSegmentationNode, None]  # noqa: UP007
    aifMaskNode: Union[slicer.vtkMRMLScalarVolumeNode, slicer.vtkMRMLSegmentationNode, None]  # noqa: UP007
    t1MapNode: slicer.vtkMRMLScalarVolumeNode
    vfaSequence: slicer.vtkMRMLSequenceNode
    resampleMasks: bool
    vfaFlipAnglesText: str

    input_kind: Annotated[str, Choice(_INFO["input_kind"].choices), Default(_DEFAULTS.input_kind)]
    model: Annotated[str, Choice(_INFO["model"].choices), Default(_DEFAULTS.model)]
    aif: Annotated[str, Choice(AIF_CHOICES), Default(_DEFAULTS.aif)]
    t1_ms: Annotated[float, Minimum(0.0), Default(0.0)]
    flip_angle_deg: Annotated[float, WithinRange(0.0, _INFO["flip_angle_deg"].maximum), Default(0.0)]
    tr_ms: Annotated[float, Minimum(0.0), Default(0.0)]
    r1_per_mM_per_s: Annotated[
        float, Minimum(POSITIVE_R1_MINIMUM_PER_MM_PER_S), Default(_DEFAULTS.r1_per_mM_per_s)
    ]
    hematocrit: Annotated[float, WithinRange(0.0, HEMATOCRIT_MAXIMUM), Default(_DEFAULTS.hematocrit)]
    baseline_frames: Annotated[int, Minimum(0), Default(0)]
    fit_delay: Annotated[bool, Default(_DEFAULTS.fit_delay)]
    max_delay_s: Annotated[float, Minimum(POSITIVE_DELAY_MINIMUM_S), Default(_DEFAULTS.max_delay_s)]
    vfa_tr_ms: Annotated[float, Minimum(0.0), Default(0.0)]
    t1_method: Annotated[str, Choice(_INFO["t1_method"].choices), Default(_DEFAULTS.t1_method)]


def givenOrNone(value: float) -> float | None:
    """A panel value of an optional parameter: ``None`` where the panel shows "not set" (0)."""
    return value if value > 0 else None


def flipAnglesFromText(text: str) -> tuple[float, ...] | None:
    """Flip angles (deg) typed as a comma-separated list; ``None`` for empty text.

    Raises
    ------
    InputError
        When an item is not a number.
    """
    try:
        angles = tuple(float(item) for item in text.split(",") if item.strip())
    except ValueError:
        raise InputError(
            _(
                "the flip angles '{text}' are not a list of numbers: type the flip angle of each frame "
                "in degrees, separated by commas, for example 2, 5, 10, 15"
            ).format(text=text)
        ) from None
    return angles or None


def analysisParameters(parameterNode: DCEKineticsParameterNode) -> DCEParameters:
    """The validated ``DCEParameters`` the panel describes.

    Raises
    ------
    InputError
        When a value is out of range or the flip angles cannot be read.
    """
    parameters = DCEParameters(
        input_kind=parameterNode.input_kind,
        model=parameterNode.model,
        aif=parameterNode.aif,
        t1_ms=givenOrNone(parameterNode.t1_ms),
        flip_angle_deg=givenOrNone(parameterNode.flip_angle_deg),
        tr_ms=givenOrNone(parameterNode.tr_ms),
        r1_per_mM_per_s=parameterNode.r1_per_mM_per_s,
        hematocrit=parameterNode.hematocrit,
        baseline_frames=givenOrNone(parameterNode.baseline_frames),
        fit_delay=parameterNode.fit_delay,
        max_delay_s=parameterNode.max_delay_s,
        vfa_flip_angles_deg=flipAnglesFromText(parameterNode.vfaFlipAnglesText),
        vfa_tr_ms=givenOrNone(parameterNode.vfa_tr_ms),
        t1_method=parameterNode.t1_method,
    )
    validate_parameters(parameters)
    return parameters


def missingApplyInputs(parameterNode: DCEKineticsParameterNode) -> list[str]:
    """What the user still has to give before the analysis can run; empty when it can run.

    Signal is converted to concentration with the pre-contrast T1 (a value or a map), the flip angle
    and the repetition time (either may come from the series' acquisition metadata); the
    image-derived arterial input needs an AIF mask.
    """
    missing = []
    if parameterNode.inputSequence is None:
        missing.append(_("a 4D series"))
    if parameterNode.input_kind == "signal":
        acquisition = acquisition_from_attributes(parameterNode.inputSequence) if parameterNode.inputSequence else {}
        if parameterNode.t1MapNode is None and givenOrNone(parameterNode.t1_ms) is None:
            missing.append(_("the T1 (a value or a T1 map)"))
        if givenOrNone(parameterNode.flip_angle_deg) is None and "flip_angle_deg" not in acquisition:
            missing.append(_("the flip angle"))
        if givenOrNone(parameterNode.tr_ms) is None and "repetition_time_ms" not in acquisition:
            missing.append(_("the repetition time"))
    if parameterNode.aif == "auto" and parameterNode.aifMaskNode is None:
        missing.append(_("an AIF mask"))
    return missing


def displayedMapName(mapNames, model: str) -> str:
    """The map shown after a run: Ktrans, or the model's first parameter if it has no Ktrans."""
    return "Ktrans" if "Ktrans" in mapNames else MODELS[model].parameter_names[0]


#
# DCEKineticsWidget
#


class DCEKineticsWidget(SpatioTemporalCommon.AnalysisModuleWidget):
    """Panel of the DCE Kinetics module, loaded from ``Resources/UI/DCEKinetics.ui``."""

    def setup(self) -> None:
        """Called when the user opens the module the first time and the widget is initialized."""
        self.setupAnalysisPanel(DCEKineticsLogic(), _("Failed to compute the DCE maps."))
        self.ui.computeT1MapButton.connect("clicked(bool)", self.onComputeT1MapButton)

    def updateWidgetStates(self, caller=None, event=None) -> None:
        """Enable what applies to the current settings; nothing but Cancel while an analysis runs."""
        parameterNode = self._parameterNode
        missing = missingApplyInputs(parameterNode) if parameterNode else [_("a 4D series")]
        idle = not self.running
        self.updateRunButtons(missing, _("Compute the maps, the statistics table and the curve plot."))
        for section in (self.ui.inputsCollapsibleButton, self.ui.modelCollapsibleButton):
            section.enabled = idle
        if parameterNode is None:
            return
        signal = idle and parameterNode.input_kind == "signal"
        self.ui.acquisitionCollapsibleButton.enabled = idle
        self.ui.vfaCollapsibleButton.enabled = signal
        for widget in (self.ui.t1MapSelector, self.ui.flipAngleSpinBox, self.ui.trSpinBox, self.ui.r1SpinBox):
            widget.enabled = signal
        self.ui.t1SpinBox.enabled = signal and parameterNode.t1MapNode is None
        self.ui.computeT1MapButton.enabled = parameterNode.vfaSequence is not None
        self.ui.aifMaskSelector.enabled = parameterNode.aif == "auto"
        self.ui.maxDelaySpinBox.enabled = parameterNode.fit_delay

    def onComputeT1MapButton(self) -> None:
        """Compute the T1 map from the variable-flip-angle series and select it as the T1 map."""
        with slicer.util.tryWithErrorDisplay(_("Failed to compute the T1 map."), waitCursor=True):
            t1MapNode, failedCount = self.logic.computeT1Map(self._parameterNode)
            self._parameterNode.t1MapNode = t1MapNode
            self.ui.statusLabel.text = _("T1 map '{name}' computed; {count} voxels without a fit.").format(
                name=t1MapNode.GetName(), count=failedCount
            )

    def showResult(self, result: DCEResult) -> None:
        """Show Ktrans (or the model's first parameter) over the series and the curve plot in the layout.

        The panel is disabled during a run, so the parameter node still holds the settings of the run.
        """
        self.showMapOverInput(result.map_nodes[displayedMapName(result.map_nodes, self._parameterNode.model)])
        slicer.modules.plots.logic().ShowChartInLayout(result.curves_chart)


#
# DCEKineticsLogic
#


class DCEKineticsLogic(ScriptedLoadableModuleLogic):
    """Runs the analyses the panel describes on the application's scene (see ``DCEKineticsLib.logic``)."""

    def getParameterNode(self) -> DCEKineticsParameterNode:
        """The module's parameter node (created on first use)."""
        return DCEKineticsParameterNode(super().getParameterNode())

    def process(self, parameterNode: DCEKineticsParameterNode, progress: Progress | None = None) -> DCEResult:
        """Analyse the parameter node's series and add the maps, table and plot to the scene.

        Parameters
        ----------
        parameterNode : DCEKineticsParameterNode
            The series, masks, T1 map and analysis parameters.
        progress : Progress, optional
            Progress and cancellation; a cancelled run adds nothing to the scene.

        Raises
        ------
        InputError
            When an input or a parameter cannot be used (the message says what to fix).
        """
        return run_dce(
            SpatioTemporalCommon.slicerContext(),
            parameterNode.inputSequence,
            analysisParameters(parameterNode),
            mask_node=parameterNode.maskNode,
            aif_mask_node=parameterNode.aifMaskNode,
            t1_map_node=parameterNode.t1MapNode,
            resample_masks=parameterNode.resampleMasks,
            progress=progress,
        )

    def computeT1Map(self, parameterNode: DCEKineticsParameterNode):
        """T1 map (ms) from the parameter node's variable-flip-angle series, added to the scene.

        The repetition time is that of the VFA images, or of the dynamic series when not given.

        Returns
        -------
        node : vtkMRMLScalarVolumeNode
            T1 in ms; NaN where the fit failed.
        failedCount : int
            Voxels without a T1.

        Raises
        ------
        InputError
            When the series, the flip angles or the repetition time are missing or invalid.
        """
        parameters = analysisParameters(parameterNode)
        if parameterNode.vfaSequence is None:
            raise InputError(_("no variable-flip-angle series selected: choose the sequence of VFA images"))
        if parameters.vfa_flip_angles_deg is None:
            raise InputError(_("no flip angles given: type the flip angle of each VFA frame, in degrees"))
        repetitionTimeMs = parameters.vfa_tr_ms or parameters.tr_ms
        if repetitionTimeMs is None:
            raise InputError(
                _("no repetition time given: set that of the VFA images, or that of the dynamic series")
            )
        return run_t1_mapping(
            SpatioTemporalCommon.slicerContext(),
            parameterNode.vfaSequence,
            parameters.vfa_flip_angles_deg,
            repetitionTimeMs,
            parameters.t1_method,
        )


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
        self.setUp()
        self.test_DCEKineticsReferenceObject()

    def test_DCEKineticsCommonChecks(self):
        """The shared series, geometry and storage checks on the application's own scene."""
        from SpatioTemporalCommonLib.selftest import run_common_checks

        self.delayDisplay("Starting the test")
        run_common_checks(SpatioTemporalCommon.slicerContext())
        self.delayDisplay("Test passed")

    def test_DCEKineticsReferenceObject(self):
        """Ktrans of a noise-free digital reference object, through the parameter node, within 1 %.

        The same check as ``Testing/dce/test_dce_logic.py`` makes headless, here through the module
        logic's ``process`` and the parameter node.
        """
        import numpy as np
        from DCEKineticsLib.dro import make_dro
        from SpatioTemporalCommonLib.sequences import add_volume_sequence
        from SpatioTemporalCommonLib.synthetic import oblique_geometry

        self.delayDisplay("Analysing a digital reference object")
        dro = make_dro(snr=float("inf"), patch_size=2, n_frames=40)
        geometry = oblique_geometry(dro.patch_labels.shape)
        frames = np.moveaxis(dro.signal, -1, 0)
        sequence = add_volume_sequence(
            SpatioTemporalCommon.slicerContext(), frames, dro.times_s, geometry, "DCE reference object"
        )
        logic = DCEKineticsLogic()
        parameterNode = logic.getParameterNode()
        parameterNode.inputSequence = sequence
        parameterNode.input_kind = "signal"
        parameterNode.model = "extended-tofts"
        parameterNode.aif = "parker"
        parameterNode.t1_ms = dro.t1_ms
        parameterNode.flip_angle_deg = dro.flip_angle_deg
        parameterNode.tr_ms = dro.tr_ms
        parameterNode.r1_per_mM_per_s = dro.r1_per_mM_per_s
        parameterNode.hematocrit = dro.hematocrit
        self.assertEqual(missingApplyInputs(parameterNode), [])

        result = logic.process(parameterNode)

        ktrans = slicer.util.arrayFromVolume(result.map_nodes["Ktrans"])
        np.testing.assert_allclose(ktrans, dro.truth["Ktrans"], rtol=0.01)
        self.assertEqual(result.analysis.n_failed, 0)
        self.delayDisplay("Test passed")
