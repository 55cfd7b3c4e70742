"""fMRI Dynamics: the Slicer module for spatio-temporal features of BOLD fMRI.

The Slicer layer only: module description, parameter node, panel and self-test. The panel
behaviour it shares with the other modules comes from ``SpatioTemporalCommon.SequenceInputModuleWidget``;
the analysis is :func:`FMRIDynamicsLib.logic.run_fmri` and the parameters are defined once, in
:class:`FMRIDynamicsLib.parameters.FMRIParameters`.
"""

import pathlib
from collections.abc import Iterable
from typing import Annotated, Union

import slicer
from FMRIDynamicsLib.logic import FMRIResult, run_fmri
from FMRIDynamicsLib.parameters import FEATURES, FMRIParameters, check_parameters
from slicer.i18n import tr as _
from slicer.parameterNodeWrapper import Choice, Default, parameterNodeWrapper
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
        self.parent.dependencies = ["SpatioTemporalCommon", "Sequences", "Plots", "Markups"]
        self.parent.contributors = ["SlicerSpatioTemporal developers"]
        self.parent.helpText = _("""
<p>fMRI Dynamics computes spatio-temporal features of a BOLD fMRI series (a sequence of volumes):
quality measures, task activation and response timing, model-free timing, lags, intrinsic timescales,
local measures and connectivity.</p>
<p><b>Inputs.</b> The repetition time comes from the frame times of the series (in s) unless typed.
Optional: a brain mask (otherwise one is made from the mean image), regions (label volume or
segmentation), seed points, seed regions (label volume or segmentation, one seed per label or segment),
a BIDS events file (onset, duration, trial_type), a confounds table (TSV),
the slice timing (BIDS JSON sidecar or a list of times), white-matter and CSF masks, and a lag reference
signal (a text file with one value per frame; otherwise the global mean signal).</p>
<p><b>Preprocessing.</b> Rigid motion correction to the mean volume, slice-timing correction, then
polynomial detrending, filtering and nuisance regression (motion terms, confounds, white-matter and CSF
means, optionally the global signal) as one projection; frames above a framewise displacement or DVARS
threshold are censored; optional Gaussian smoothing (FWHM in mm). Optionally (Advanced), a selective
temporal-ICA clean-up replaces the regression of the nuisance signals: only the temporal ICA components
of the cleaned data whose time course correlates with a nuisance signal are removed (table
ica_cleanup).</p>
<p><b>Features.</b> qc: temporal SNR map, framewise displacement and DVARS of every frame. glm: effect
and z maps of every trial type and contrast (SPM or Glover response, AR(1) or OLS noise model) and maps
of the response peak latency and width. mi: mutual-information time maps (preferred time after onset,
amplitude, permutation significance). lag: lag (s) and peak correlation against the reference; with
regions, the region delay matrix, lag projection and latency eigenvectors. int: intrinsic timescale
maps (positive autocorrelation area, autocorrelation half width). alff: ALFF, fALFF and mALFF. reho:
regional homogeneity (Kendall's W). entropy: sample entropy. fc: seed correlation maps and region
matrices (Pearson, Fisher z, partial correlation, coherence); a seed point's map is
seed_&lt;n&gt;_correlation, a seed region's seed_&lt;name&gt;_correlation. dfc: sliding-window
connectivity of the regions. ica: spatial ICA component maps and time courses.</p>
<p>With every feature checked, the features the inputs allow are computed and the others are skipped
(the status line says why). When only some are checked, each of them is required.</p>
<p><b>Outputs.</b> One volume per map in a folder named after the series, the ICA components as a
sequence, tables (quality, motion, connectivity, delays) and plots of the quality measures, motion,
region and component time courses and lag reference. The first activation z map (else the lag map,
else the first map) is shown over the series, and the quality plot in the plot view. Voxels that cannot be analysed
are NaN in the maps, never zero.</p>
""") + _('<p>See the <a href="{url}">extension documentation</a>.</p>').format(
            url=SpatioTemporalCommon.EXTENSION_HOMEPAGE
        )
        self.parent.acknowledgementText = SpatioTemporalCommon.acknowledgementText()


#
# FMRIDynamicsParameterNode
#

#: Defaults, choices and ranges of the analysis parameters, read from their one definition.
_DEFAULTS = FMRIParameters()
_INFO = {field.name: info for field, info in parameter_fields(FMRIParameters)}


#: The parameter-node validator of a widget's range (see ``SpatioTemporalCommon.panelRanges``).
panelRange = SpatioTemporalCommon.panelRanges(FMRIParameters)


@parameterNodeWrapper
class FMRIDynamicsParameterNode:
    """
    The parameters of the panel.

    Fields named in snake_case are the fields of ``FMRIParameters`` with the same meaning and unit; an
    optional one that is 0 here is not given (``None`` in ``FMRIParameters``). The camelCase fields are
    the panel's own: node selections, files, the resample option and one checkbox per feature.

    Node references use ``typing.Union``: the wrapper recognises node unions only in that form. Files
    are ``pathlib.Path`` because the wrapper binds ``ctkPathLineEdit`` only to paths; the empty path
    ``pathlib.Path()`` (which the line edit shows as ".") means no file.

    inputSequence - The BOLD series (a sequence of volumes) to analyse.
    maskNode - Brain mask (label volume or segmentation); None: automatic from the mean image.
    labelsNode - Regions of connectivity, dynamic connectivity and region delays, or None.
    seedsNode - Point list whose control points (RAS, world coordinates) are the seeds of the seed maps.
    seedRegionsNode - Seed regions (label volume or segmentation), one seed map per label or segment.
    whiteMatterNode - White-matter mask whose mean signal is a nuisance regressor, or None.
    csfNode - CSF mask whose mean signal is a nuisance regressor, or None.
    eventsPath - BIDS events.tsv (onset, duration, trial_type) of the GLM and mutual information.
    confoundsPath - Table of nuisance regressors (TSV with a header row, one row per frame).
    sliceTimingPath - Slice acquisition times: BIDS JSON sidecar, or a text list in s.
    referenceSignalPath - Lag reference, one value per frame; empty: the global mean signal.
    resampleMasks - Resample masks and regions on another grid instead of refusing them.
    featureGlm ... featureQc - Whether each feature of ``FEATURES`` is checked (see :func:`requiredFeatures`).
    """

    inputSequence: slicer.vtkMRMLSequenceNode
    maskNode: Union[slicer.vtkMRMLScalarVolumeNode, slicer.vtkMRMLSegmentationNode, None]  # noqa: UP007
    labelsNode: Union[slicer.vtkMRMLScalarVolumeNode, slicer.vtkMRMLSegmentationNode, None]  # noqa: UP007
    seedsNode: slicer.vtkMRMLMarkupsFiducialNode
    seedRegionsNode: Union[slicer.vtkMRMLScalarVolumeNode, slicer.vtkMRMLSegmentationNode, None]  # noqa: UP007
    whiteMatterNode: Union[slicer.vtkMRMLScalarVolumeNode, slicer.vtkMRMLSegmentationNode, None]  # noqa: UP007
    csfNode: Union[slicer.vtkMRMLScalarVolumeNode, slicer.vtkMRMLSegmentationNode, None]  # noqa: UP007
    eventsPath: pathlib.Path
    confoundsPath: pathlib.Path
    sliceTimingPath: pathlib.Path
    referenceSignalPath: pathlib.Path
    resampleMasks: bool

    featureGlm: Annotated[bool, Default(True)]
    featureLag: Annotated[bool, Default(True)]
    featureMi: Annotated[bool, Default(True)]
    featureInt: Annotated[bool, Default(True)]
    featureAlff: Annotated[bool, Default(True)]
    featureReho: Annotated[bool, Default(True)]
    featureEntropy: Annotated[bool, Default(True)]
    featureFc: Annotated[bool, Default(True)]
    featureDfc: Annotated[bool, Default(True)]
    featureIca: Annotated[bool, Default(True)]
    featureQc: Annotated[bool, Default(True)]

    tr_s: Annotated[float, panelRange("tr_s", 3, zeroIsNotSet=True), Default(0.0)]
    motion_correction: Annotated[bool, Default(_DEFAULTS.motion_correction)]
    slice_time_reference: Annotated[
        float, panelRange("slice_time_reference", 2), Default(_DEFAULTS.slice_time_reference)
    ]
    band_low_hz: Annotated[float, panelRange("band_low_hz", 3), Default(_DEFAULTS.band_low_hz)]
    band_high_hz: Annotated[float, panelRange("band_high_hz", 3), Default(_DEFAULTS.band_high_hz)]
    smooth_fwhm_mm: Annotated[float, panelRange("smooth_fwhm_mm", 1), Default(_DEFAULTS.smooth_fwhm_mm)]
    censor_fd_mm: Annotated[float, panelRange("censor_fd_mm", 2, zeroIsNotSet=True), Default(0.0)]
    censor_dvars: Annotated[float, panelRange("censor_dvars", 2, zeroIsNotSet=True), Default(0.0)]
    motion_terms: Annotated[int, Choice(_INFO["motion_terms"].choices), Default(_DEFAULTS.motion_terms)]
    global_signal: Annotated[bool, Default(_DEFAULTS.global_signal)]

    hrf_model: Annotated[str, Choice(_INFO["hrf_model"].choices), Default(_DEFAULTS.hrf_model)]
    max_lag_s: Annotated[float, panelRange("max_lag_s", 1), Default(_DEFAULTS.max_lag_s)]
    reho_neighbourhood: Annotated[
        int, Choice(_INFO["reho_neighbourhood"].choices), Default(_DEFAULTS.reho_neighbourhood)
    ]
    ica_components: Annotated[int, panelRange("ica_components"), Default(_DEFAULTS.ica_components)]
    dfc_window_s: Annotated[float, panelRange("dfc_window_s", 1), Default(_DEFAULTS.dfc_window_s)]
    dfc_step_s: Annotated[float, panelRange("dfc_step_s", 1), Default(_DEFAULTS.dfc_step_s)]

    filter_order: Annotated[int, panelRange("filter_order"), Default(_DEFAULTS.filter_order)]
    detrend_order: Annotated[int, panelRange("detrend_order"), Default(_DEFAULTS.detrend_order)]
    high_pass_cutoff_s: Annotated[
        float, panelRange("high_pass_cutoff_s", 1), Default(_DEFAULTS.high_pass_cutoff_s)
    ]
    head_radius_mm: Annotated[float, panelRange("head_radius_mm", 1), Default(_DEFAULTS.head_radius_mm)]
    noise_model: Annotated[str, Choice(_INFO["noise_model"].choices), Default(_DEFAULTS.noise_model)]
    contrasts: Annotated[str, Default(_DEFAULTS.contrasts)]
    hrf_shape_model: Annotated[
        str, Choice(_INFO["hrf_shape_model"].choices), Default(_DEFAULTS.hrf_shape_model)
    ]
    hrf_window_s: Annotated[float, panelRange("hrf_window_s", 1), Default(_DEFAULTS.hrf_window_s)]
    hrf_trial_type: Annotated[str, Default(_DEFAULTS.hrf_trial_type)]
    mi_max_delay_s: Annotated[float, panelRange("mi_max_delay_s", 1), Default(_DEFAULTS.mi_max_delay_s)]
    mi_bins: Annotated[int, panelRange("mi_bins"), Default(_DEFAULTS.mi_bins)]
    mi_shuffles: Annotated[int, panelRange("mi_shuffles"), Default(_DEFAULTS.mi_shuffles)]
    alff_low_hz: Annotated[float, panelRange("alff_low_hz", 3), Default(_DEFAULTS.alff_low_hz)]
    alff_high_hz: Annotated[float, panelRange("alff_high_hz", 3), Default(_DEFAULTS.alff_high_hz)]
    entropy_m: Annotated[int, panelRange("entropy_m"), Default(_DEFAULTS.entropy_m)]
    entropy_r: Annotated[float, panelRange("entropy_r", 2), Default(_DEFAULTS.entropy_r)]
    seed_radius_mm: Annotated[float, panelRange("seed_radius_mm", 1), Default(_DEFAULTS.seed_radius_mm)]
    ica_cleanup: Annotated[bool, Default(_DEFAULTS.ica_cleanup)]
    ica_cleanup_components: Annotated[
        int, panelRange("ica_cleanup_components"), Default(_DEFAULTS.ica_cleanup_components)
    ]
    ica_cleanup_threshold: Annotated[
        float, panelRange("ica_cleanup_threshold", 2), Default(_DEFAULTS.ica_cleanup_threshold)
    ]
    random_seed: Annotated[int, panelRange("random_seed"), Default(_DEFAULTS.random_seed)]


def featureFieldName(feature: str) -> str:
    """The parameter-node checkbox field of a feature of ``FEATURES``: ``glm`` -> ``featureGlm``."""
    return "feature" + feature.capitalize()


def checkedFeatures(parameterNode: FMRIDynamicsParameterNode) -> tuple[str, ...]:
    """The features whose checkbox is checked, in the order of ``FEATURES``."""
    return tuple(name for name in FEATURES if getattr(parameterNode, featureFieldName(name)))


def requiredFeatures(checked: Iterable[str]) -> tuple[str, ...]:
    """The features a run is asked for (``FMRIParameters.features`` once comma-joined).

    Every feature checked asks for none in particular: every feature the inputs allow is computed and
    the others are skipped. Otherwise the checked features are asked for, and a run whose inputs do
    not allow one of them is refused.

    Raises
    ------
    InputError
        When no feature is checked.
    """
    checked = tuple(checked)
    if not checked:
        raise InputError(_("no feature is checked: check the features to compute"))
    return () if set(checked) == set(FEATURES) else checked


def pathOrNone(path: pathlib.Path) -> str | None:
    """A file chosen in the panel, or ``None`` where the path is empty (``pathlib.Path()``)."""
    return None if path == pathlib.Path() else str(path)


def seedPoints(markupsNode) -> list[tuple[float, float, float]]:
    """RAS positions (mm, world coordinates) of the control points of a point list; none without one."""
    if markupsNode is None:
        return []
    return [tuple(point) for point in slicer.util.arrayFromMarkupsControlPoints(markupsNode, world=True)]


def analysisParameters(parameterNode: FMRIDynamicsParameterNode) -> FMRIParameters:
    """The validated ``FMRIParameters`` the panel describes.

    The parameters the panel does not show (``output_format``, a file setting of the command line)
    keep their defaults.

    Raises
    ------
    InputError
        When a value is out of range or the band edges, ALFF band or window step are inconsistent.
    """
    referencePath = pathOrNone(parameterNode.referenceSignalPath)
    parameters = FMRIParameters(
        tr_s=parameterNode.tr_s or None,
        features=",".join(requiredFeatures(checkedFeatures(parameterNode))),
        reference=referencePath if referencePath is not None else "global",
        band_low_hz=parameterNode.band_low_hz,
        band_high_hz=parameterNode.band_high_hz,
        smooth_fwhm_mm=parameterNode.smooth_fwhm_mm,
        motion_correction=parameterNode.motion_correction,
        censor_fd_mm=parameterNode.censor_fd_mm or None,
        censor_dvars=parameterNode.censor_dvars or None,
        filter_order=parameterNode.filter_order,
        detrend_order=parameterNode.detrend_order,
        motion_terms=parameterNode.motion_terms,
        global_signal=parameterNode.global_signal,
        head_radius_mm=parameterNode.head_radius_mm,
        high_pass_cutoff_s=parameterNode.high_pass_cutoff_s,
        hrf_model=parameterNode.hrf_model,
        noise_model=parameterNode.noise_model,
        contrasts=parameterNode.contrasts,
        hrf_shape_model=parameterNode.hrf_shape_model,
        hrf_window_s=parameterNode.hrf_window_s,
        hrf_trial_type=parameterNode.hrf_trial_type,
        mi_max_delay_s=parameterNode.mi_max_delay_s,
        mi_bins=parameterNode.mi_bins,
        mi_shuffles=parameterNode.mi_shuffles,
        max_lag_s=parameterNode.max_lag_s,
        alff_low_hz=parameterNode.alff_low_hz,
        alff_high_hz=parameterNode.alff_high_hz,
        reho_neighbourhood=parameterNode.reho_neighbourhood,
        entropy_m=parameterNode.entropy_m,
        entropy_r=parameterNode.entropy_r,
        seed_radius_mm=parameterNode.seed_radius_mm,
        dfc_window_s=parameterNode.dfc_window_s,
        dfc_step_s=parameterNode.dfc_step_s,
        ica_components=parameterNode.ica_components,
        ica_cleanup=parameterNode.ica_cleanup,
        ica_cleanup_components=parameterNode.ica_cleanup_components,
        ica_cleanup_threshold=parameterNode.ica_cleanup_threshold,
        slice_time_reference=parameterNode.slice_time_reference,
        random_seed=parameterNode.random_seed,
    )
    check_parameters(parameters)
    return parameters


def missingApplyInputs(parameterNode: FMRIDynamicsParameterNode) -> list[str]:
    """What the user still has to give before the analysis can run; empty when it can run.

    A series and at least one feature. Features asked for on their own (see :func:`requiredFeatures`)
    need their inputs: task events for glm and mi, regions for dfc, regions, seed points or seed
    regions for fc.
    """
    missing = []
    if parameterNode.inputSequence is None:
        missing.append(_("a 4D series"))
    checked = checkedFeatures(parameterNode)
    if not checked:
        missing.append(_("at least one feature"))
        return missing
    required = set(requiredFeatures(checked))
    if required & {"glm", "mi"} and pathOrNone(parameterNode.eventsPath) is None:
        missing.append(_("an events file (for glm and mi)"))
    if "dfc" in required and parameterNode.labelsNode is None:
        missing.append(_("regions (for dfc)"))
    connectivityInputs = (parameterNode.labelsNode, parameterNode.seedsNode, parameterNode.seedRegionsNode)
    if "fc" in required and all(node is None for node in connectivityInputs):
        missing.append(_("regions, seed points or seed regions (for fc)"))
    return missing


def displayedMapName(mapNames: Iterable[str]) -> str | None:
    """The map shown after a run: the first activation z map, else the lag map, else the first map."""
    names = list(mapNames)
    activation = [name for name in names if name.startswith("glm_") and name.endswith("_z")]
    if activation:
        return activation[0]
    if "lag" in names:
        return "lag"
    return names[0] if names else None


def resultSummary(result: FMRIResult) -> str:
    """Status text after a run: the features computed, the repetition time used, the features skipped."""
    analysis = result.analysis
    lines = [
        _("Computed {names}; repetition time {tr:g} s ({source}).").format(
            names=", ".join(analysis.features), tr=analysis.tr_s, source=result.tr_source
        )
    ]
    lines += [
        _("Skipped {name}: {reason}.").format(name=name, reason=reason)
        for name, reason in analysis.skipped.items()
    ]
    return "\n".join(lines)


#
# FMRIDynamicsWidget
#


class FMRIDynamicsWidget(SpatioTemporalCommon.AnalysisModuleWidget):
    """Panel of the fMRI Dynamics module, loaded from ``Resources/UI/FMRIDynamics.ui``."""

    def setup(self) -> None:
        """Called when the user opens the module the first time and the widget is initialized."""
        self.setupAnalysisPanel(FMRIDynamicsLogic(), _("Failed to compute the fMRI features."))

    def updateWidgetStates(self, caller=None, event=None) -> None:
        """Enable what applies to the current settings; nothing but Cancel while an analysis runs."""
        parameterNode = self._parameterNode
        missing = missingApplyInputs(parameterNode) if parameterNode else [_("a 4D series")]
        idle = not self.running
        self.updateRunButtons(missing, _("Compute the checked features and add their maps, tables and plots to the scene."))
        for section in (
            self.ui.inputsCollapsibleButton,
            self.ui.preprocessingCollapsibleButton,
            self.ui.featuresCollapsibleButton,
            self.ui.advancedCollapsibleButton,
        ):
            section.enabled = idle
        if parameterNode is None:
            return
        self.ui.sliceTimeReferenceSpinBox.enabled = pathOrNone(parameterNode.sliceTimingPath) is not None
        checked = checkedFeatures(parameterNode)
        featureSettings = {
            "glm": (self.ui.hrfModelComboBox,),
            "lag": (self.ui.maxLagSpinBox,),
            "reho": (self.ui.rehoNeighbourhoodComboBox,),
            "ica": (self.ui.icaComponentsSpinBox,),
            "dfc": (self.ui.dfcWindowSpinBox, self.ui.dfcStepSpinBox),
        }
        for feature, widgets in featureSettings.items():
            for widget in widgets:
                widget.enabled = feature in checked
        for widget in (self.ui.icaCleanupComponentsSpinBox, self.ui.icaCleanupThresholdSpinBox):
            widget.enabled = parameterNode.ica_cleanup

    def showResult(self, result: FMRIResult) -> None:
        """Show the first activation or lag map over the series and the quality chart in the layout."""
        self.ui.statusLabel.text = resultSummary(result)
        mapName = displayedMapName(result.map_nodes)
        if mapName is not None:
            self.showMapOverInput(result.map_nodes[mapName])
        qualityChart = result.chart_nodes.get("qc")
        if qualityChart is not None:
            slicer.modules.plots.logic().ShowChartInLayout(qualityChart)


#
# FMRIDynamicsLogic
#


class FMRIDynamicsLogic(ScriptedLoadableModuleLogic):
    """Runs the analysis the panel describes on the application's scene (see ``FMRIDynamicsLib.logic``)."""

    def getParameterNode(self) -> FMRIDynamicsParameterNode:
        """The module's parameter node (created on first use)."""
        return FMRIDynamicsParameterNode(super().getParameterNode())

    def process(
        self, parameterNode: FMRIDynamicsParameterNode, progress: Progress | None = None
    ) -> FMRIResult:
        """Analyse the parameter node's series and add the maps, tables and plots to the scene.

        Parameters
        ----------
        parameterNode : FMRIDynamicsParameterNode
            The series, masks, regions, seeds, files and analysis parameters.
        progress : Progress, optional
            Progress and cancellation; a cancelled run adds nothing to the scene.

        Raises
        ------
        InputError
            When an input or a parameter cannot be used (the message says what to fix).
        """
        if parameterNode.inputSequence is None:
            raise InputError(_("no 4D series selected: choose the sequence of BOLD volumes to analyse"))
        return run_fmri(
            SpatioTemporalCommon.slicerContext(),
            parameterNode.inputSequence,
            analysisParameters(parameterNode),
            mask_node=parameterNode.maskNode,
            labels_node=parameterNode.labelsNode,
            events_path=pathOrNone(parameterNode.eventsPath),
            confounds_path=pathOrNone(parameterNode.confoundsPath),
            slice_timing_path=pathOrNone(parameterNode.sliceTimingPath),
            white_matter_node=parameterNode.whiteMatterNode,
            csf_node=parameterNode.csfNode,
            seeds_ras=seedPoints(parameterNode.seedsNode),
            seed_regions_node=parameterNode.seedRegionsNode,
            resample_masks=parameterNode.resampleMasks,
            progress=progress,
        )


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
        self.setUp()
        self.test_FMRIDynamicsPhantomLags()

    def test_FMRIDynamicsCommonChecks(self):
        """The shared series, geometry and storage checks on the application's own scene."""
        from SpatioTemporalCommonLib.selftest import run_common_checks

        self.delayDisplay("Starting the test")
        run_common_checks(SpatioTemporalCommon.slicerContext())
        self.delayDisplay("Test passed")

    def test_FMRIDynamicsPhantomLags(self):
        """Lags of the phantom's propagating signal, through the parameter node, within the headless tolerance.

        The same phantom, global-signal reference and tolerance (median error under 0.05 s, largest
        under 0.15 s) as ``Testing/fmri/test_fmri_pipeline.py``, here through the module logic's
        ``process`` and the parameter node, with only the lag feature checked.
        """
        import numpy as np
        from FMRIDynamicsLib.phantom import make_phantom
        from SpatioTemporalCommonLib.sequences import add_volume_sequence
        from SpatioTemporalCommonLib.synthetic import oblique_geometry

        self.delayDisplay("Analysing an fMRI phantom")
        phantom = make_phantom()
        geometry = oblique_geometry(phantom.brain.shape, spacing_ijk=phantom.spacing_kji[::-1])
        times = np.arange(phantom.data.shape[-1]) * phantom.tr_s
        sequence = add_volume_sequence(
            SpatioTemporalCommon.slicerContext(),
            np.moveaxis(phantom.data, -1, 0),
            times,
            geometry,
            "fMRI phantom",
        )
        logic = FMRIDynamicsLogic()
        parameterNode = logic.getParameterNode()
        parameterNode.inputSequence = sequence
        parameterNode.motion_correction = False
        for name in FEATURES:
            setattr(parameterNode, featureFieldName(name), name == "lag")
        self.assertEqual(missingApplyInputs(parameterNode), [])

        result = logic.process(parameterNode)

        self.assertEqual(result.analysis.features, ("lag",))
        lags = slicer.util.arrayFromVolume(result.map_nodes["lag"])
        oscillating = np.isfinite(phantom.lag_s)
        errors = np.abs(lags[oscillating] - phantom.lag_s[oscillating])
        self.assertLess(np.median(errors), 0.05)
        self.assertLess(np.max(errors), 0.15)
        self.delayDisplay("Test passed")
