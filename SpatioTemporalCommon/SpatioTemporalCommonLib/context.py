"""The MRML context a logic works in: a scene with the application logic and module logics.

In Slicer the context is built from the running application (see ``SpatioTemporalCommon.py``).
Headless, :meth:`MRMLContext.create_headless` builds the same objects from the ``slicer-core``
wheel. The module logics keep only a raw pointer to the application logic, so the context holds
Python references to all of them for the scene's lifetime (dropping the application logic while a
volumes logic still uses it crashes the process).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

_HEADLESS_LOGIC_CLASSES = (
    ("Volumes", "vtkSlicerVolumesLogic"),
    ("Segmentations", "vtkSlicerSegmentationsModuleLogic"),
    ("Sequences", "vtkSlicerSequencesLogic"),
    ("SubjectHierarchy", "vtkSlicerSubjectHierarchyModuleLogic"),
)


@dataclass
class MRMLContext:
    """A scene together with the logics that operate on it.

    Parameters
    ----------
    scene : vtkMRMLScene
        The scene that receives every node a logic creates.
    application_logic : vtkSlicerApplicationLogic
        The application logic the module logics were registered with.
    logics : dict of str to vtkMRMLAbstractLogic
        Module logics by module name: ``Volumes``, ``Sequences``, ``Segmentations``, ``Colors``,
        ``SubjectHierarchy``.
    """

    scene: Any
    application_logic: Any
    logics: dict[str, Any] = field(default_factory=dict)

    def logic(self, module_name: str) -> Any:
        """Return the logic of ``module_name`` (e.g. ``"Sequences"``)."""
        return self.logics[module_name]

    @classmethod
    def create_headless(cls) -> MRMLContext:
        """Build a new scene with the application and module logics of ``slicer-core``."""
        import slicer

        scene = slicer.vtkMRMLScene()
        application_logic = slicer.vtkSlicerApplicationLogic()
        application_logic.SetMRMLScene(scene)
        color_logic = application_logic.GetColorLogic()
        color_logic.SetMRMLScene(scene)
        color_logic.AddDefaultColorNodes()
        application_logic.SetModuleLogic("Colors", color_logic)
        logics = {"Colors": color_logic}
        for module_name, class_name in _HEADLESS_LOGIC_CLASSES:
            logic = getattr(slicer, class_name)()
            logic.SetMRMLScene(scene)
            logic.SetMRMLApplicationLogic(application_logic)
            application_logic.SetModuleLogic(module_name, logic)
            logics[module_name] = logic
        return cls(scene=scene, application_logic=application_logic, logics=logics)
