"""Tumor Segmentation 4D: the Slicer module for tumour segmentation of multi-phase breast DCE-MRI.

The Slicer layer only: module description, parameter node, panel and self-test. The panel
behaviour it shares with the other modules comes from ``SpatioTemporalCommon.AnalysisModuleWidget``;
the segmentation is :func:`TumorSegmentation4DLib.logic.run_segmentation` and the parameters are
defined once, in :class:`TumorSegmentation4DLib.parameters.SegmentationParameters`.

The network needs Python packages that Slicer does not bundle (PyTorch, MONAI, einops, safetensors,
listed in ``Resources/requirements.txt``). Loading the module imports none of them: the first Apply
checks them, asks once to install the missing ones (PyTorch through the PyTorch extension where it
is installed, so that the build matches the computer's GPU) and only then imports the logic.
"""

import os
import pathlib
from typing import TYPE_CHECKING, Annotated

import slicer
from slicer.i18n import tr as _
from slicer.parameterNodeWrapper import Choice, Default, parameterNodeWrapper
from slicer.ScriptedLoadableModule import (
    ScriptedLoadableModule,
    ScriptedLoadableModuleLogic,
    ScriptedLoadableModuleTest,
)
from SpatioTemporalCommonLib.errors import InputError
from SpatioTemporalCommonLib.parameters import parameter_fields, validate_parameters
from SpatioTemporalCommonLib.progress import Progress
from TumorSegmentation4DLib.parameters import SegmentationParameters

import SpatioTemporalCommon

if TYPE_CHECKING:
    from TumorSegmentation4DLib.logic import TumorSegmentationResult

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
        self.parent.dependencies = ["SpatioTemporalCommon", "Sequences", "Segmentations"]
        self.parent.contributors = ["SlicerSpatioTemporal developers"]
        self.parent.helpText = _("""
<p>Tumor Segmentation 4D segments tumours in multi-phase breast DCE-MRI with a network that sees the
pre-contrast phase, the first post-contrast phase and a later post-contrast phase together with their
acquisition times, so that the uptake and wash-out of the contrast agent inform the segmentation, not
only the brightness of one image. It is intended for research, not for clinical use.</p>
<p><b>Inputs.</b> The DCE series: a sequence of at least 3 phases on one grid, indexed by acquisition
time (s, ms or min). The pre-contrast phase is taken as the time of injection: every phase's time is
counted from it. Phases: pre-contrast, first post-contrast and one or more later phases, by index from 0
(empty: 0, 1 and every later phase, the prediction averaged over the later ones). Weights: a file
written by <code>spatiotemporal train-segmentation</code>; empty uses the shipped weights, which were
trained on synthetic phantoms only and are not expected to work on real images.</p>
<p><b>Segmentation.</b> Optional N4 bias-field correction, resampling to 1 mm, intensity normalisation
per study, then a sliding-window prediction on the CPU or a CUDA GPU (auto picks the GPU when there is
one; a GPU that runs out of memory falls back to the CPU). Voxels above the probability threshold are
tumour; optionally only the largest connected component is kept.</p>
<p><b>Outputs.</b> In a folder named after the series: a segmentation with the segment
<i>tumor</i> on the series' grid, a table of its volume (ml) and number of components, and optionally
the tumour probability as a volume.</p>
<p>On the first Apply, the Python packages the network needs (PyTorch, MONAI, einops, safetensors) are
installed after one confirmation, PyTorch through the PyTorch extension where it is installed.</p>
""") + _('<p>See the <a href="{url}">extension documentation</a>.</p>').format(
            url=SpatioTemporalCommon.EXTENSION_HOMEPAGE
        )
        self.parent.acknowledgementText = SpatioTemporalCommon.acknowledgementText()


#
# TumorSegmentation4DParameterNode
#

#: Defaults and choices of the segmentation parameters, read from their one definition.
_DEFAULTS = SegmentationParameters()
_INFO = {field.name: info for field, info in parameter_fields(SegmentationParameters)}

#: The parameter-node validator of a widget's range (see ``SpatioTemporalCommon.panelRanges``).
panelRange = SpatioTemporalCommon.panelRanges(SegmentationParameters)


@parameterNodeWrapper
class TumorSegmentation4DParameterNode:
    """
    The parameters of the panel.

    Fields named in snake_case are the fields of ``SegmentationParameters`` with the same meaning and
    unit; the camelCase fields are the panel's own. The weights path is ``pathlib.Path`` because the
    wrapper binds ``ctkPathLineEdit`` only to paths; the empty path ``pathlib.Path()`` means the
    shipped weights.

    inputSequence - The DCE series (a sequence of phase volumes indexed by acquisition time).
    phasesText - Phase indices as typed (comma-separated), parsed into SegmentationParameters.phases.
    weightsPath - Network weights file; empty for the shipped weights.
    """

    inputSequence: slicer.vtkMRMLSequenceNode
    phasesText: str
    weightsPath: pathlib.Path

    device: Annotated[str, Choice(_INFO["device"].choices), Default(_DEFAULTS.device)]
    n4: Annotated[bool, Default(_DEFAULTS.n4)]
    keep_largest: Annotated[bool, Default(_DEFAULTS.keep_largest)]
    probability: Annotated[bool, Default(_DEFAULTS.probability)]
    threshold: Annotated[float, panelRange("threshold", 2), Default(_DEFAULTS.threshold)]
    overlap: Annotated[float, panelRange("overlap", 2), Default(_DEFAULTS.overlap)]


def phasesFromText(text: str) -> tuple[int, ...] | None:
    """Phase indices typed as a comma-separated list; ``None`` (the default phases) for empty text.

    Raises
    ------
    InputError
        When an item is not a whole number.
    """
    try:
        phases = tuple(int(item) for item in text.split(",") if item.strip())
    except ValueError:
        raise InputError(
            _(
                "the phases '{text}' are not a list of phase numbers: type the pre-contrast, first "
                "post-contrast and later phase indices from 0, separated by commas, for example 0, 1, 5"
            ).format(text=text)
        ) from None
    return phases or None


def pathOrNone(path: pathlib.Path) -> str | None:
    """A file chosen in the panel, or ``None`` where the path is empty (``pathlib.Path()``)."""
    return None if path == pathlib.Path() else str(path)


def segmentationParameters(parameterNode: TumorSegmentation4DParameterNode) -> SegmentationParameters:
    """The validated ``SegmentationParameters`` the panel describes.

    Raises
    ------
    InputError
        When a value is out of range or the phases cannot be read.
    """
    parameters = SegmentationParameters(
        phases=phasesFromText(parameterNode.phasesText),
        device=parameterNode.device,
        n4=parameterNode.n4,
        keep_largest=parameterNode.keep_largest,
        probability=parameterNode.probability,
        threshold=parameterNode.threshold,
        overlap=parameterNode.overlap,
    )
    validate_parameters(parameters)
    return parameters


def missingApplyInputs(parameterNode: TumorSegmentation4DParameterNode) -> list[str]:
    """What the user still has to give before the segmentation can run: the series; empty when it can run."""
    return [_("a DCE series")] if parameterNode.inputSequence is None else []


def resultSummary(result: "TumorSegmentationResult") -> str:
    """Status text after a run: tumour volume and components, device, phases averaged, notes."""
    statistics = result.statistics
    phases = " + ".join(", ".join(str(i) for i in sample) for sample in result.analysis.samples)
    lines = [
        _("Tumour volume {volume:.2f} ml in {count} component(s) (largest {largest:.2f} ml).").format(
            volume=statistics.volume_ml, count=statistics.components, largest=statistics.largest_component_ml
        ),
        _("Segmented on {device} from phases {phases}, with the weights {weights}.").format(
            device=result.analysis.device, phases=phases, weights=result.weights_path.name
        ),
    ]
    return "\n".join(lines + list(result.notes))


#
# Python packages of the segmentation
#


def requirementsPath() -> str:
    """The module's ``Resources/requirements.txt``."""
    return os.path.join(
        os.path.dirname(slicer.modules.tumorsegmentation4d.path), "Resources", "requirements.txt"
    )


def missingRequirements() -> list:
    """The requirements of ``Resources/requirements.txt`` that are not satisfied (``Requirement`` objects)."""
    import slicer.packaging

    return [
        requirement
        for requirement in slicer.packaging.load_requirements(requirementsPath())
        if not slicer.packaging.pip_check(requirement)
    ]


def installTorch(requirement) -> None:
    """Install PyTorch through the PyTorch extension (the build for this computer's GPU), else with pip."""
    import slicer.packaging

    try:
        import PyTorchUtils
    except ModuleNotFoundError:
        slicer.packaging.pip_ensure([requirement], prompt_install=False, requester=_("Tumor Segmentation 4D"))
        return
    torch = PyTorchUtils.PyTorchUtilsLogic().installTorch(
        askConfirmation=False, torchVersionRequirement=str(requirement.specifier)
    )
    if torch is None:
        raise InputError(
            _(
                "PyTorch could not be installed: install it in the PyTorch Utils module, then click "
                "Apply again"
            )
        )


def installRequirements(missing: list) -> None:
    """Install the missing requirements without asking again: PyTorch first, then the others."""
    import slicer.packaging

    torchRequirements = [requirement for requirement in missing if requirement.name == "torch"]
    others = [requirement for requirement in missing if requirement.name != "torch"]
    for requirement in torchRequirements:
        installTorch(requirement)
    if others:
        slicer.packaging.pip_ensure(others, prompt_install=False, requester=_("Tumor Segmentation 4D"))


#
# TumorSegmentation4DWidget
#


class TumorSegmentation4DWidget(SpatioTemporalCommon.AnalysisModuleWidget):
    """Panel of the Tumor Segmentation 4D module, loaded from ``Resources/UI/TumorSegmentation4D.ui``."""

    def setup(self) -> None:
        """Called when the user opens the module the first time and the widget is initialized."""
        self.setupAnalysisPanel(TumorSegmentation4DLogic(), _("Failed to segment the tumour."))

    def updateWidgetStates(self, caller=None, event=None) -> None:
        """Enable Apply when a series is selected; nothing but Cancel while a segmentation runs."""
        parameterNode = self._parameterNode
        missing = missingApplyInputs(parameterNode) if parameterNode else [_("a DCE series")]
        idle = not self.running
        self.updateRunButtons(
            missing, _("Segment the tumour, add its volume table and (optionally) the probability map.")
        )
        for section in (self.ui.inputsCollapsibleButton, self.ui.settingsCollapsibleButton):
            section.enabled = idle

    def onApplyButton(self) -> None:
        """Make sure the segmentation packages are installed (asking once), then segment."""
        if self.segmentationPackagesReady():
            super().onApplyButton()

    def segmentationPackagesReady(self) -> bool:
        """Whether the packages of ``Resources/requirements.txt`` are installed, installing them after one
        confirmation when they are not."""
        missing = missingRequirements()
        if not missing:
            return True
        names = "\n".join(str(requirement) for requirement in missing)
        if not slicer.util.confirmOkCancelDisplay(
            _(
                "The tumour segmentation needs Python packages that are not installed yet. Install them "
                "now? This needs a network connection and may take several minutes; PyTorch is installed "
                "through the PyTorch extension where it is installed, in the build that matches this "
                "computer's GPU."
            ),
            _("Install Python packages"),
            detailedText=names,
        ):
            self.ui.statusLabel.text = _("Nothing was installed, so nothing was segmented.")
            return False
        installed = False
        with slicer.util.tryWithErrorDisplay(
            _("Failed to install the segmentation packages."), waitCursor=True
        ):
            installRequirements(missing)
            installed = True
        return installed

    def showResult(self, result: "TumorSegmentationResult") -> None:
        """Show the volume in the status line, the segmentation over the series (with the probability map
        when made, else nothing in the foreground) and centre the views on the tumour."""
        self.ui.statusLabel.text = resultSummary(result)
        self.showMapOverInput(result.probability_node)
        segmentation = result.segmentation_node
        segmentation.CreateClosedSurfaceRepresentation()
        if result.statistics.voxels:
            segmentId = segmentation.GetSegmentation().GetNthSegmentID(0)
            center = segmentation.GetSegmentCenterRAS(segmentId)
            slicer.modules.markups.logic().JumpSlicesToLocation(*center, True)


#
# TumorSegmentation4DLogic
#


class TumorSegmentation4DLogic(ScriptedLoadableModuleLogic):
    """Runs the segmentation the panel describes on the scene (see ``TumorSegmentation4DLib.logic``)."""

    def getParameterNode(self) -> TumorSegmentation4DParameterNode:
        """The module's parameter node (created on first use)."""
        return TumorSegmentation4DParameterNode(super().getParameterNode())

    def process(
        self, parameterNode: TumorSegmentation4DParameterNode, progress: Progress | None = None
    ) -> "TumorSegmentationResult":
        """Segment the tumour of the parameter node's series and add the segmentation, table and
        (optionally) the probability map to the scene.

        Parameters
        ----------
        parameterNode : TumorSegmentation4DParameterNode
            The series, phases, weights file and segmentation parameters.
        progress : Progress, optional
            Progress and cancellation; a cancelled run adds nothing to the scene.

        Raises
        ------
        InputError
            When an input or a parameter cannot be used (the message says what to fix).
        """
        from TumorSegmentation4DLib.logic import run_segmentation

        if parameterNode.inputSequence is None:
            raise InputError(_("no DCE series selected: choose the sequence of DCE phases to segment"))
        return run_segmentation(
            SpatioTemporalCommon.slicerContext(),
            parameterNode.inputSequence,
            segmentationParameters(parameterNode),
            weights_path=pathOrNone(parameterNode.weightsPath),
            progress=progress,
        )


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
        self.setUp()
        self.test_TumorSegmentation4DTinyNetworkOnPhantom()

    def test_TumorSegmentation4DCommonChecks(self):
        """The shared series, geometry and storage checks on the application's own scene."""
        from SpatioTemporalCommonLib.selftest import run_common_checks

        self.delayDisplay("Starting the test")
        run_common_checks(SpatioTemporalCommon.slicerContext())
        self.delayDisplay("Test passed")

    def test_TumorSegmentation4DTinyNetworkOnPhantom(self):
        """A small untrained network on a small phantom through the parameter node and the module logic.

        As in ``Testing/segmentation/test_segmentation_logic.py``: the segmentation, its labels and the
        probability map lie on the series' oblique, anisotropic grid, and the table holds the volume.
        """
        missing = missingRequirements()
        if missing:
            self.skipTest(f"the segmentation packages are not installed: {', '.join(map(str, missing))}")
        import tempfile

        import numpy as np
        import torch
        from SpatioTemporalCommonLib.nodes import labels_from_segmentation
        from SpatioTemporalCommonLib.sequences import add_volume_sequence, volume_geometry
        from SpatioTemporalCommonLib.synthetic import oblique_geometry
        from TumorSegmentation4DLib.network import NetworkConfig, TemporalMambaUNet
        from TumorSegmentation4DLib.phantom import generate_breast_phantom
        from TumorSegmentation4DLib.weights import save_weights

        self.delayDisplay("Segmenting a small phantom with a small untrained network")
        context = SpatioTemporalCommon.slicerContext()
        geometry = oblique_geometry((16, 40, 40), spacing_ijk=(0.9, 1.1, 2.5))
        phantom = generate_breast_phantom(
            3,
            shape=geometry.shape,
            spacing=geometry.spacing_kji,
            n_post_contrast=2,
            lesion_radius_mm=(3.0, 4.0),
        )
        torch.manual_seed(0)
        network = TemporalMambaUNet(NetworkConfig(features=(4, 8, 8, 16), d_state=4, time_embedding=8))
        logic = TumorSegmentation4DLogic()
        parameterNode = logic.getParameterNode()
        parameterNode.inputSequence = add_volume_sequence(
            context, phantom.phases, phantom.times, geometry, "Phantom DCE"
        )
        parameterNode.probability = True
        parameterNode.n4 = False
        parameterNode.device = "cpu"
        self.assertEqual(missingApplyInputs(parameterNode), [])
        with tempfile.TemporaryDirectory() as folder:
            weightsPath = pathlib.Path(folder) / "tiny.safetensors"
            save_weights(weightsPath, network, {"roi_size": [16, 16, 16]})
            parameterNode.weightsPath = weightsPath
            result = logic.process(parameterNode)

        self.assertIsNone(volume_geometry(result.probability_node).mismatch(geometry))
        exported = labels_from_segmentation(context, result.segmentation_node, result.probability_node)
        np.testing.assert_array_equal(exported, result.analysis.label)
        self.assertEqual(result.segmentation_node.GetSegmentation().GetNthSegment(0).GetName(), "tumor")
        self.assertAlmostEqual(
            float(result.statistics_table.GetTable().GetValueByName(0, "volume_ml").ToDouble()),
            result.statistics.volume_ml,
        )
        self.delayDisplay("Test passed")
