"""SpatioTemporalCommon: the hidden Slicer module that carries ``SpatioTemporalCommonLib``.

It also holds what the Slicer layer of the analysis modules shares, so that each module file keeps
only what is its own:

- :func:`slicerContext`, the running application's scene and module logics as the
  ``MRMLContext`` the headless logic takes;
- :class:`SequenceInputModuleWidget`, the panel behaviour every module starts from: pick a 4D series
  (a sequence of volumes) and read its frames, frame times and geometry;
- :class:`AnalysisModuleWidget`, its extension for modules that run an analysis (Apply, Cancel,
  progress, error display);
- :func:`panelRanges`, the ranges of the parameter-node fields, read from a module's parameters
  dataclass;
- the category, help and acknowledgement texts every module shows.
"""

from collections.abc import Callable

import qt
import slicer
import vtk
from slicer.i18n import tr as _
from slicer.i18n import translate
from slicer.parameterNodeWrapper import Minimum, WithinRange
from slicer.ScriptedLoadableModule import (
    ScriptedLoadableModule,
    ScriptedLoadableModuleLogic,
    ScriptedLoadableModuleTest,
    ScriptedLoadableModuleWidget,
)
from slicer.util import VTKObservationMixin
from SpatioTemporalCommonLib.context import MRMLContext
from SpatioTemporalCommonLib.errors import InputError, ProcessingCancelled
from SpatioTemporalCommonLib.info import summarize_sequence_node
from SpatioTemporalCommonLib.parameters import parameter_fields
from SpatioTemporalCommonLib.progress import Progress

EXTENSION_HOMEPAGE = "https://github.com/SlicerSpatioTemporal/SlicerSpatioTemporal"

#
# SpatioTemporalCommon
#


class SpatioTemporalCommon(ScriptedLoadableModule):
    """Uses ScriptedLoadableModule base class, available at:
    https://github.com/Slicer/Slicer/blob/main/Base/Python/slicer/ScriptedLoadableModule.py
    """

    def __init__(self, parent):
        ScriptedLoadableModule.__init__(self, parent)
        self.parent.title = _("SpatioTemporal Common")
        self.parent.categories = moduleCategories()
        self.parent.dependencies = ["Volumes", "Sequences", "Segmentations", "Colors", "SubjectHierarchy"]
        self.parent.contributors = ["SlicerSpatioTemporal developers"]
        self.parent.helpText = _("""
<p>Code shared by the SpatioTemporal modules: conversion between 4D series and arrays with their
geometry and frame times, result nodes, file input and output, input checks and progress reporting.
It has no panel of its own.</p>
""")
        self.parent.acknowledgementText = acknowledgementText()
        self.parent.hidden = True


def moduleCategories() -> list[str]:
    """Module selector category of every SpatioTemporal module: ``Quantification.SpatioTemporal``.

    The top level uses Slicer's own translation of "Quantification", so the modules appear in the
    core Quantification category in every language.
    """
    return [translate("qSlicerAbstractCoreModule", "Quantification") + ".SpatioTemporal"]


def moduleHelpText(purposeText: str) -> str:
    """Help text of an analysis module: what it is for, what this version does, where to read more.

    Parameters
    ----------
    purposeText : str
        Translated HTML paragraph saying what the module is for.
    """
    statusText = _("""
<p>In this version the panel shows the frames, frame times and geometry of the selected 4D series.
The analysis described above is being developed and is not available yet.</p>
""")
    linkText = _('<p>See the <a href="{url}">extension documentation</a>.</p>').format(url=EXTENSION_HOMEPAGE)
    return purposeText + statusText + linkText


def acknowledgementText() -> str:
    """Acknowledgement shown by every SpatioTemporal module."""
    return _("""
<p>Developed by the SlicerSpatioTemporal developers. Built on 3D Slicer and its Sequences module.</p>
""")


def slicerContext() -> MRMLContext:
    """The running application's scene, application logic and module logics as an ``MRMLContext``.

    This is the context the module logics take, the same type the headless tests and the command line
    build with ``MRMLContext.create_headless()``.
    """
    return MRMLContext(
        scene=slicer.mrmlScene,
        application_logic=slicer.app.applicationLogic(),
        logics={
            "Volumes": slicer.modules.volumes.logic(),
            "Sequences": slicer.modules.sequences.logic(),
            "Segmentations": slicer.modules.segmentations.logic(),
            "Colors": slicer.modules.colors.logic(),
            "SubjectHierarchy": slicer.modules.subjecthierarchy.logic(),
        },
    )


def panelRanges(parametersClass: type) -> Callable[..., WithinRange | Minimum]:
    """The ``panelRange`` function of a module whose parameters are the dataclass ``parametersClass``.

    A module's parameter node annotates each numeric field with ``panelRange(name, decimals)``, so the
    widget offers the range that the parameter's one definition gives.

    Parameters
    ----------
    parametersClass : type
        The module's parameters dataclass, its fields made with ``SpatioTemporalCommonLib.parameters.parameter``.
    """
    infoByName = {field.name: info for field, info in parameter_fields(parametersClass)}

    def panelRange(name: str, decimals: int = 0, *, zeroIsNotSet: bool = False) -> WithinRange | Minimum:
        """The values a panel widget offers for a parameter: its valid range at the widget's precision.

        Parameters
        ----------
        name : str
            A field of the parameters dataclass that has a lower limit.
        decimals : int
            Decimals the widget shows (0 for integers). An exclusive limit becomes the nearest value inside
            the range at that precision, e.g. (0, inf) shown with 3 decimals starts at 0.001.
        zeroIsNotSet : bool
            The widget starts at 0, shown as "not set" (``None`` in the parameters dataclass).
        """
        info = infoByName[name]
        step = 10.0**-decimals if decimals else 1
        minimum = 0 if zeroIsNotSet else info.minimum + (0 if info.minimum_inclusive else step)
        if info.maximum is None:
            return Minimum(minimum)
        return WithinRange(minimum, info.maximum - (0 if info.maximum_inclusive else step))

    return panelRange


def inputSummaryText(sequenceNode) -> str:
    """Text for the input summary box: the series summary, or why the series cannot be used.

    Parameters
    ----------
    sequenceNode : vtkMRMLSequenceNode or None
        The selected input; ``None`` gives an empty text, so that the box shows its placeholder.
    """
    if sequenceNode is None:
        return ""
    try:
        return summarize_sequence_node(sequenceNode)
    except InputError as error:
        return str(error)


#
# SequenceInputModuleWidget
#


class SequenceInputModuleWidget(ScriptedLoadableModuleWidget, VTKObservationMixin):
    """Panel shared by the analysis modules: pick a 4D series and read what it holds.

    A module's widget class derives from this one and calls :meth:`setupSequenceInputPanel` with its
    logic from ``setup``. The logic's ``getParameterNode`` returns the module's
    ``@parameterNodeWrapper`` parameter node, which has an ``inputSequence`` field. The panel is loaded
    from ``Resources/UI/<Module>.ui``: a ``qMRMLNodeComboBox`` bound to ``inputSequence`` by its
    ``SlicerParameterName`` property, and a read-only ``inputSummaryTextEdit``.

    The summary is computed when the selected series changes, not on every parameter change nor on
    every visit of the module, since summarising reads every voxel of the series. Closing the scene
    or removing the series clears it.
    """

    def __init__(self, parent=None) -> None:
        """Called when the user opens the module the first time and the widget is initialized."""
        ScriptedLoadableModuleWidget.__init__(self, parent)
        VTKObservationMixin.__init__(self)  # needed for parameter node observation
        self.logic = None
        self._parameterNode = None
        self._parameterNodeGuiTag = None
        self._summarizedSequence = None

    def setupSequenceInputPanel(self, logic: ScriptedLoadableModuleLogic) -> None:
        """Build the panel from ``Resources/UI/<Module>.ui`` and connect it to ``logic``'s parameter node."""
        ScriptedLoadableModuleWidget.setup(self)

        # Load widget from .ui file (created by Qt Designer).
        uiWidget = slicer.util.loadUI(self.resourcePath(f"UI/{self.moduleName}.ui"))
        self.layout.addWidget(uiWidget)
        self.ui = slicer.util.childWidgetVariables(uiWidget)

        # Set scene in MRML widgets. In the .ui file the top-level qMRMLWidget's
        # "mrmlSceneChanged(vtkMRMLScene*)" signal is connected to each MRML widget's
        # "setMRMLScene(vtkMRMLScene*)" slot.
        uiWidget.setMRMLScene(slicer.mrmlScene)

        # The summary is laid out in aligned columns.
        self.ui.inputSummaryTextEdit.setFont(qt.QFontDatabase.systemFont(qt.QFontDatabase.FixedFont))

        self.logic = logic

        # These connections ensure that we update parameter node when scene is closed
        self.addObserver(slicer.mrmlScene, slicer.mrmlScene.StartCloseEvent, self.onSceneStartClose)
        self.addObserver(slicer.mrmlScene, slicer.mrmlScene.EndCloseEvent, self.onSceneEndClose)

        # Make sure parameter node is initialized (needed for module reload)
        self.initializeParameterNode()

    def cleanup(self) -> None:
        """Called when the application closes and the module widget is destroyed."""
        self.removeObservers()

    def enter(self) -> None:
        """Called each time the user opens this module."""
        # Make sure parameter node exists and observed
        self.initializeParameterNode()

    def exit(self) -> None:
        """Called each time the user opens a different module."""
        # Do not react to parameter node changes (GUI will be updated when the user enters into the module)
        if self._parameterNode:
            self._parameterNode.disconnectGui(self._parameterNodeGuiTag)
            self._parameterNodeGuiTag = None
            self.removeObserver(self._parameterNode, vtk.vtkCommand.ModifiedEvent, self.updateInputSummary)

    def onSceneStartClose(self, caller, event) -> None:
        """Called just before the scene is closed."""
        # Parameter node will be reset, do not use it anymore
        self.setParameterNode(None)

    def onSceneEndClose(self, caller, event) -> None:
        """Called just after the scene is closed."""
        # If this module is shown while the scene is closed then recreate a new parameter node immediately
        if self.parent.isEntered:
            self.initializeParameterNode()

    def initializeParameterNode(self) -> None:
        """Ensure parameter node exists and observed."""
        # Parameter node stores all user choices in parameter values, node selections, etc.
        # so that when the scene is saved and reloaded, these settings are restored.
        self.setParameterNode(self.logic.getParameterNode())

        # Select default input nodes if nothing is selected yet to save a few clicks for the user
        if not self._parameterNode.inputSequence:
            firstSequenceNode = slicer.mrmlScene.GetFirstNodeByClass("vtkMRMLSequenceNode")
            if firstSequenceNode:
                self._parameterNode.inputSequence = firstSequenceNode

    def setParameterNode(self, inputParameterNode) -> None:
        """
        Set and observe parameter node.
        Observation is needed because when the parameter node is changed then the GUI must be updated
        immediately.
        """
        if self._parameterNode:
            self._parameterNode.disconnectGui(self._parameterNodeGuiTag)
            self.removeObserver(self._parameterNode, vtk.vtkCommand.ModifiedEvent, self.updateInputSummary)
        self._parameterNode = inputParameterNode
        if self._parameterNode:
            # Note: in the .ui file, a Qt dynamic property called "SlicerParameterName" is set on each
            # ui element that needs connection.
            self._parameterNodeGuiTag = self._parameterNode.connectGui(self.ui)
            self.addObserver(self._parameterNode, vtk.vtkCommand.ModifiedEvent, self.updateInputSummary)
        self.updateInputSummary()

    def updateInputSummary(self, caller=None, event=None) -> None:
        """Show the summary of the selected series when the selection has changed."""
        sequenceNode = self._parameterNode.inputSequence if self._parameterNode else None
        if sequenceNode is self._summarizedSequence:
            return
        self._summarizedSequence = sequenceNode
        self.ui.inputSummaryTextEdit.setPlainText(inputSummaryText(sequenceNode))


#
# AnalysisModuleWidget
#


class AnalysisModuleWidget(SequenceInputModuleWidget):
    """Panel of a module that runs an analysis: Apply, Cancel, a progress bar and a status line.

    The ``.ui`` has ``applyButton``, ``cancelButton``, ``progressBar`` and ``statusLabel``. A module's
    widget calls :meth:`setupAnalysisPanel` from ``setup`` and defines two methods:
    ``updateWidgetStates(caller=None, event=None)`` (which widgets apply to the current settings,
    using ``self.running``; called whenever the parameter node changes and when a run starts or
    ends) and ``showResult(result)`` (what to show after a run). The logic's
    ``process(parameterNode, progress)`` runs the analysis; a cancelled run leaves the scene as it
    was and only says so in the status line.
    """

    def __init__(self, parent=None) -> None:
        """Called when the user opens the module the first time and the widget is initialized."""
        super().__init__(parent)
        self.running = False
        self._cancelRequested = False
        self._failureMessage = ""

    def setupAnalysisPanel(self, logic: ScriptedLoadableModuleLogic, failureMessage: str) -> None:
        """Build the panel and connect Apply and Cancel; ``failureMessage`` titles the error dialog."""
        self._failureMessage = failureMessage
        self.setupSequenceInputPanel(logic)
        self.ui.applyButton.connect("clicked(bool)", self.onApplyButton)
        self.ui.cancelButton.connect("clicked(bool)", self.onCancelButton)

    def exit(self) -> None:
        """Called each time the user opens a different module."""
        if self._parameterNode:
            self.removeObserver(self._parameterNode, vtk.vtkCommand.ModifiedEvent, self.updateWidgetStates)
        super().exit()

    def setParameterNode(self, inputParameterNode) -> None:
        """Set and observe the parameter node; the widgets follow what it holds."""
        if self._parameterNode:
            self.removeObserver(self._parameterNode, vtk.vtkCommand.ModifiedEvent, self.updateWidgetStates)
        super().setParameterNode(inputParameterNode)
        if self._parameterNode:
            self.addObserver(self._parameterNode, vtk.vtkCommand.ModifiedEvent, self.updateWidgetStates)
        self.updateWidgetStates()

    def updateRunButtons(self, missing: list[str], readyToolTip: str) -> None:
        """Enable Apply when nothing is ``missing`` and no run is going on; Cancel only during a run."""
        self.ui.applyButton.enabled = not self.running and not missing
        self.ui.applyButton.toolTip = (
            _("Give first: {items}.").format(items=", ".join(missing)) if missing else readyToolTip
        )
        self.ui.cancelButton.enabled = self.running

    def onApplyButton(self) -> None:
        """Run the analysis with the panel's settings and show its results."""
        self._cancelRequested = False
        self._setRunning(True)
        try:
            with slicer.util.tryWithErrorDisplay(self._failureMessage):
                self._runAnalysis()
        finally:
            self._setRunning(False)

    def onCancelButton(self) -> None:
        """Ask the running analysis to stop at its next progress report."""
        self._cancelRequested = True
        self.ui.statusLabel.text = _("Cancelling...")

    def showMapOverInput(self, mapNode) -> None:
        """Show ``mapNode`` half-transparent over the input series' current frame, and fit the views."""
        sequenceNode = self._parameterNode.inputSequence
        browserNode = slicer.modules.sequences.logic().GetFirstBrowserNodeForSequenceNode(sequenceNode)
        background = browserNode.GetProxyNode(sequenceNode) if browserNode else "keep-current"
        slicer.util.setSliceViewerLayers(background=background, foreground=mapNode, foregroundOpacity=0.5, fit=True)

    def _runAnalysis(self) -> None:
        progress = Progress(self._showProgress, lambda: self._cancelRequested)
        try:
            result = self.logic.process(self._parameterNode, progress)
        except ProcessingCancelled:
            self.ui.progressBar.value = 0
            self.ui.statusLabel.text = _("Cancelled: nothing was added to the scene.")
            return
        self.showResult(result)

    def _setRunning(self, running: bool) -> None:
        self.running = running
        self.updateWidgetStates()

    def _showProgress(self, fraction: float, message: str) -> None:
        """Progress callback of the analysis: update the bar and the status, keep the panel responsive."""
        self.ui.progressBar.value = round(100 * fraction)
        self.ui.statusLabel.text = message
        slicer.app.processEvents()


#
# SpatioTemporalCommonTest
#


class SpatioTemporalCommonTest(ScriptedLoadableModuleTest):
    """Runs, in the Slicer application, the checks that the headless test suite runs on slicer-core."""

    def setUp(self):
        """Do whatever is needed to reset the state - typically a scene clear will be enough."""
        slicer.mrmlScene.Clear()

    def runTest(self):
        """Run as few or as many tests as needed here."""
        self.setUp()
        self.test_SpatioTemporalCommonChecks()

    def test_SpatioTemporalCommonChecks(self):
        """Series conversion, geometry, storage and result nodes on the application's own scene."""
        from SpatioTemporalCommonLib.selftest import run_common_checks

        self.delayDisplay("Starting the test")
        run_common_checks(slicerContext())
        self.delayDisplay("Test passed")
