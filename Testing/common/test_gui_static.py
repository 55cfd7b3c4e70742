"""Static checks of the Slicer layer: ``.ui`` files, panel code, parameter nodes, CMake lists.

The module panels need the Slicer application to run. These checks find, without Qt, the mistakes
that would otherwise only show when someone opens a panel in Slicer or builds the extension:

- every ``.ui`` file is Qt Designer XML naming its module, and uses only real Qt / CTK / Slicer
  widget classes, each non-Qt class declared in ``<customwidgets>`` with its header;
- every Slicer widget receives the scene through the ``mrmlSceneChanged`` -> ``setMRMLScene``
  connection (without it a node selector stays empty);
- every ``self.ui.<name>`` used by a module's widget class (or a class it derives from, in any
  module file) is a widget of that module's ``.ui``;
- every ``SlicerParameterName`` names a field of the module's ``@parameterNodeWrapper`` class;
- one parameter definition per module: every field of that class that is not a node reference nor
  listed in :data:`PANEL_ONLY_FIELDS` is a field of the dataclass in ``<Module>Lib/parameters.py``
  (where that file exists), with the same name and value type;
- every module's ``CMakeLists.txt`` lists exactly the Python files and resources on disk, so an
  installed extension holds every file that the source tree does;
- the module files define the classes Slicer looks up by name, the analysis modules depend on
  the hidden ``SpatioTemporalCommon`` module, and the icons are 128 x 128 PNG files.

Module files are read with :mod:`ast`, never imported (they need the Slicer application).
"""

from __future__ import annotations

import ast
import re
import struct
import xml.etree.ElementTree as ElementTree
from dataclasses import dataclass
from functools import cache
from pathlib import Path

import pytest

REPOSITORY_ROOT = Path(__file__).resolve().parents[2]
COMMON_MODULE = "SpatioTemporalCommon"
ICON_SIZE_PX = 128

# Widget and layout classes a .ui file may use. A class missing here is either a typo or a class
# new to this project: check it exists, then add it to the matching set.
# Qt 5 QtWidgets classes (https://doc.qt.io/qt-5/qtwidgets-module.html).
KNOWN_QT_CLASSES = frozenset(
    {
        "QWidget",
        "QFrame",
        "QLabel",
        "QPushButton",
        "QToolButton",
        "QCheckBox",
        "QRadioButton",
        "QComboBox",
        "QSpinBox",
        "QDoubleSpinBox",
        "QSlider",
        "QLineEdit",
        "QTextEdit",
        "QPlainTextEdit",
        "QTextBrowser",
        "QProgressBar",
        "QGroupBox",
        "QTabWidget",
        "QStackedWidget",
        "QScrollArea",
        "QSplitter",
        "QListWidget",
        "QTreeWidget",
        "QTableWidget",
        "QListView",
        "QTreeView",
        "QTableView",
        "QDialogButtonBox",
        "QButtonGroup",
        "QToolBar",
        "QVBoxLayout",
        "QHBoxLayout",
        "QFormLayout",
        "QGridLayout",
        "QStackedLayout",
    }
)
# CTK widgets (https://github.com/commontk/CTK/tree/master/Libs/Widgets).
KNOWN_CTK_CLASSES = frozenset(
    {
        "ctkCollapsibleButton",
        "ctkCollapsibleGroupBox",
        "ctkCheckBox",
        "ctkComboBox",
        "ctkCheckableComboBox",
        "ctkSliderWidget",
        "ctkRangeWidget",
        "ctkDoubleSlider",
        "ctkDoubleRangeSlider",
        "ctkDoubleSpinBox",
        "ctkPathLineEdit",
        "ctkDirectoryButton",
        "ctkMenuButton",
        "ctkColorPickerButton",
        "ctkSearchBox",
        "ctkFittedTextBrowser",
    }
)
# Slicer widgets (https://github.com/Slicer/Slicer/tree/main/Libs/MRML/Widgets and the widget
# libraries of the Sequences, Segmentations, SubjectHierarchy and Markups modules). Each of them shows
# scene content and gets the scene through its setMRMLScene slot.
KNOWN_SLICER_CLASSES = frozenset(
    {
        "qMRMLWidget",
        "qMRMLNodeComboBox",
        "qMRMLCheckableNodeComboBox",
        "qMRMLSubjectHierarchyComboBox",
        "qMRMLSubjectHierarchyTreeView",
        "qMRMLSegmentSelectorWidget",
        "qMRMLSegmentsTableView",
        "qMRMLSequenceBrowserToolBar",
        "qMRMLSequenceBrowserPlayWidget",
        "qMRMLSequenceBrowserSeekWidget",
        "qSlicerMarkupsPlaceWidget",
        "qMRMLSliderWidget",
        "qMRMLSpinBox",
        "qMRMLTableView",
        "qMRMLPlotView",
        "qMRMLCollapsibleButton",
    }
)
KNOWN_WIDGET_CLASSES = KNOWN_QT_CLASSES | KNOWN_CTK_CLASSES | KNOWN_SLICER_CLASSES
SCENE_SIGNAL = "mrmlSceneChanged(vtkMRMLScene*)"
SCENE_SLOT = "setMRMLScene(vtkMRMLScene*)"

# Parameter-node fields that hold the panel's own state rather than an analysis parameter, by module,
# each with the reason. Node references (fields typed with vtkMRML classes) are recognised by their
# type and need no entry. Every other parameter-node field is an analysis parameter and must be a
# field of the module's parameters dataclass, so that the panel, the command line and the logic share
# one definition of it.
PANEL_ONLY_FIELDS = {
    "DCEKinetics": {
        "resampleMasks": "an option of run_dce (resample masks on another grid), not an analysis parameter",
        "vfaFlipAnglesText": "the flip angles as typed, parsed into DCEParameters.vfa_flip_angles_deg",
    },
    "FMRIDynamics": {
        "eventsPath": "a file argument of run_fmri (events_path), not an analysis parameter",
        "confoundsPath": "a file argument of run_fmri (confounds_path), not an analysis parameter",
        "sliceTimingPath": "a file argument of run_fmri (slice_timing_path), not an analysis parameter",
        "referenceSignalPath": "the lag reference file; empty gives FMRIParameters.reference 'global'",
        "resampleMasks": "an option of run_fmri (resample masks on another grid), not an analysis parameter",
        "featureGlm": "checkbox of the glm feature, joined into FMRIParameters.features",
        "featureLag": "checkbox of the lag feature, joined into FMRIParameters.features",
        "featureMi": "checkbox of the mi feature, joined into FMRIParameters.features",
        "featureInt": "checkbox of the int feature, joined into FMRIParameters.features",
        "featureAlff": "checkbox of the alff feature, joined into FMRIParameters.features",
        "featureReho": "checkbox of the reho feature, joined into FMRIParameters.features",
        "featureEntropy": "checkbox of the entropy feature, joined into FMRIParameters.features",
        "featureFc": "checkbox of the fc feature, joined into FMRIParameters.features",
        "featureDfc": "checkbox of the dfc feature, joined into FMRIParameters.features",
        "featureIca": "checkbox of the ica feature, joined into FMRIParameters.features",
        "featureQc": "checkbox of the qc feature, joined into FMRIParameters.features",
    },
    "TumorSegmentation4D": {
        "phasesText": "the phase indices as typed, parsed into SegmentationParameters.phases",
        "weightsPath": "a file argument of run_segmentation (weights_path), not a segmentation parameter",
    },
}


@dataclass(frozen=True)
class ModuleFiles:
    """Paths of one module folder."""

    name: str

    @property
    def folder(self) -> Path:
        return REPOSITORY_ROOT / self.name

    @property
    def script(self) -> Path:
        return self.folder / f"{self.name}.py"

    @property
    def ui(self) -> Path:
        return self.folder / "Resources" / "UI" / f"{self.name}.ui"

    @property
    def cmake(self) -> Path:
        return self.folder / "CMakeLists.txt"

    @property
    def icon(self) -> Path:
        return self.folder / "Resources" / "Icons" / f"{self.name}.png"


def relative(path: Path) -> str:
    """``path`` relative to the repository root, for messages."""
    return path.relative_to(REPOSITORY_ROOT).as_posix()


def cmake_commands(path: Path, command: str) -> list[list[str]]:
    """Arguments of every call of ``command`` in a CMake file (comments removed, split on blanks)."""
    text = re.sub(r"#[^\n]*", "", path.read_text(encoding="utf-8"))
    pattern = rf"\b{re.escape(command)}\s*\(([^)]*)\)"
    return [arguments.split() for arguments in re.findall(pattern, text, flags=re.IGNORECASE)]


@cache
def extension_module_names() -> tuple[str, ...]:
    """Module folders the top-level ``CMakeLists.txt`` adds, in order."""
    return tuple(
        arguments[0] for arguments in cmake_commands(REPOSITORY_ROOT / "CMakeLists.txt", "add_subdirectory")
    )


@cache
def parsed_script(path: Path) -> ast.Module:
    """The syntax tree of a module file."""
    return ast.parse(path.read_text(encoding="utf-8"), filename=str(path))


def classes_in(path: Path) -> dict[str, ast.ClassDef]:
    """Top-level classes of a module file by name."""
    return {node.name: node for node in parsed_script(path).body if isinstance(node, ast.ClassDef)}


@cache
def all_module_classes() -> dict[str, tuple[Path, ast.ClassDef]]:
    """Every top-level class of every module file, by name, with the file that defines it."""
    found = {}
    for name in extension_module_names():
        script = ModuleFiles(name).script
        for class_name, class_def in classes_in(script).items():
            found[class_name] = (script, class_def)
    return found


def base_class_names(class_def: ast.ClassDef) -> list[str]:
    """Names of the direct base classes (``Module.Class`` gives ``Class``)."""
    names = []
    for base in class_def.bases:
        if isinstance(base, ast.Name):
            names.append(base.id)
        elif isinstance(base, ast.Attribute):
            names.append(base.attr)
    return names


def class_with_ancestors(class_name: str) -> list[str]:
    """``class_name`` and every base class of it defined in a module file, nearest first."""
    classes = all_module_classes()
    lineage, pending = [], [class_name]
    while pending:
        current = pending.pop(0)
        if current in classes and current not in lineage:
            lineage.append(current)
            pending.extend(base_class_names(classes[current][1]))
    return lineage


def self_ui_names(class_def: ast.ClassDef) -> set[str]:
    """Names ``X`` used as ``self.ui.X`` in a class."""
    return {
        node.attr
        for node in ast.walk(class_def)
        if isinstance(node, ast.Attribute)
        and isinstance(node.value, ast.Attribute)
        and node.value.attr == "ui"
        and isinstance(node.value.value, ast.Name)
        and node.value.value.id == "self"
    }


def decorator_names(class_def: ast.ClassDef) -> set[str]:
    """Names of a class's decorators (``@a.b`` gives ``b``)."""
    names = set()
    for decorator in class_def.decorator_list:
        target = decorator.func if isinstance(decorator, ast.Call) else decorator
        names.add(target.attr if isinstance(target, ast.Attribute) else getattr(target, "id", ""))
    return names


def field_annotations(class_def: ast.ClassDef) -> dict[str, ast.expr]:
    """Annotations of the annotated class attributes (the fields of a wrapper or dataclass), by name."""
    return {
        node.target.id: node.annotation
        for node in class_def.body
        if isinstance(node, ast.AnnAssign) and isinstance(node.target, ast.Name)
    }


def annotated_fields(class_def: ast.ClassDef) -> set[str]:
    """Names of the annotated class attributes (the fields of a parameter node wrapper)."""
    return set(field_annotations(class_def))


def value_type(annotation: ast.expr) -> str:
    """The value type of a field annotation as source text, without ``Annotated`` metadata and ``None``.

    ``Annotated[float, Minimum(0)]``, ``float | None`` and ``Optional[float]`` all give ``"float"``, so a
    panel field whose "not set" is a sentinel value matches an optional dataclass field.
    """
    if isinstance(annotation, ast.Subscript):
        outer = ast.unparse(annotation.value).rsplit(".", 1)[-1]
        if outer == "Annotated" and isinstance(annotation.slice, ast.Tuple):
            return value_type(annotation.slice.elts[0])
        if outer == "Optional":
            return value_type(annotation.slice)
    if isinstance(annotation, ast.BinOp) and isinstance(annotation.op, ast.BitOr):
        parts = [
            part
            for part in (annotation.left, annotation.right)
            if not (isinstance(part, ast.Constant) and part.value is None)
        ]
        if len(parts) == 1:
            return value_type(parts[0])
    return ast.unparse(annotation)


def is_node_reference(annotation: ast.expr) -> bool:
    """Whether a parameter-node field holds MRML nodes (its annotation names vtkMRML classes)."""
    return "vtkMRML" in ast.unparse(annotation)


def parent_settings(module: ModuleFiles) -> dict[str, ast.expr]:
    """Values assigned to ``self.parent.<attribute>`` in the module class, by attribute."""
    module_class = classes_in(module.script).get(module.name)
    if module_class is None:
        return {}
    settings = {}
    for node in ast.walk(module_class):
        if not isinstance(node, ast.Assign):
            continue
        for target in node.targets:
            if (
                isinstance(target, ast.Attribute)
                and isinstance(target.value, ast.Attribute)
                and target.value.attr == "parent"
            ):
                settings[target.attr] = node.value
    return settings


def is_hidden(module: ModuleFiles) -> bool:
    """Whether the module class sets ``self.parent.hidden = True``."""
    hidden = parent_settings(module).get("hidden")
    return isinstance(hidden, ast.Constant) and hidden.value is True


def visible_modules() -> list[str]:
    """Modules with a panel: every module except the hidden common one."""
    return [name for name in extension_module_names() if name != COMMON_MODULE]


def ui_files() -> list[Path]:
    """Every ``.ui`` file of every module."""
    return sorted(
        path for name in extension_module_names() for path in ModuleFiles(name).folder.rglob("*.ui")
    )


def ui_widget_classes(path: Path) -> dict[str, str]:
    """Widget names of a ``.ui`` file mapped to their classes."""
    root = ElementTree.parse(path).getroot()
    return {widget.get("name"): widget.get("class") for widget in root.iter("widget")}


def files_under(folder: Path) -> set[Path]:
    """Files below ``folder``, without Python caches."""
    if not folder.is_dir():
        return set()
    return {
        path
        for path in folder.rglob("*")
        if path.is_file() and "__pycache__" not in path.parts and path.suffix != ".pyc"
    }


def cmake_list(module: ModuleFiles, variable: str) -> list[str]:
    """Entries of ``set(<variable> ...)`` in the module's CMakeLists, with ``${MODULE_NAME}`` expanded."""
    for arguments in cmake_commands(module.cmake, "set"):
        if arguments and arguments[0] == variable:
            return [entry.replace("${MODULE_NAME}", module.name) for entry in arguments[1:]]
    pytest.fail(f"{relative(module.cmake)} does not set {variable}")


def listing_differences(
    module: ModuleFiles, variable: str, listed: list[str], on_disk: set[str]
) -> list[str]:
    """Messages for files on disk missing from a CMake list, and listed files absent from disk."""
    problems = [
        f"{relative(module.cmake)}: {variable} does not list {name}, which is on disk"
        for name in sorted(on_disk - set(listed))
    ]
    problems += [
        f"{relative(module.cmake)}: {variable} lists {name}, which is not on disk"
        for name in sorted(set(listed) - on_disk)
    ]
    return problems


def png_size(path: Path) -> tuple[int, int]:
    """Width and height of a PNG file, from its header."""
    header = path.read_bytes()[:24]
    if header[:8] != b"\x89PNG\r\n\x1a\n":
        pytest.fail(f"{relative(path)} is not a PNG file")
    return struct.unpack(">II", header[16:24])


@pytest.fixture(params=extension_module_names())
def module(request) -> ModuleFiles:
    """Each module of the extension."""
    return ModuleFiles(request.param)


@pytest.fixture(params=visible_modules())
def visible_module(request) -> ModuleFiles:
    """Each module that has a panel."""
    return ModuleFiles(request.param)


@pytest.fixture(params=ui_files(), ids=relative)
def ui_file(request) -> Path:
    """Each ``.ui`` file."""
    return request.param


def test_extension_builds_every_module_folder() -> None:
    listed = set(extension_module_names())
    on_disk = {path.parent.name for path in REPOSITORY_ROOT.glob("*/*.py") if path.stem == path.parent.name}
    assert not on_disk - listed, f"CMakeLists.txt has no add_subdirectory for {sorted(on_disk - listed)}"
    assert not listed - on_disk, f"CMakeLists.txt adds {sorted(listed - on_disk)}, which has no <Module>.py"
    assert COMMON_MODULE in listed, f"CMakeLists.txt does not add {COMMON_MODULE}"


def test_module_defines_the_classes_slicer_looks_up(module: ModuleFiles) -> None:
    classes = classes_in(module.script)
    expected = [module.name, f"{module.name}Test"]
    if module.name != COMMON_MODULE:
        expected += [f"{module.name}Widget", f"{module.name}Logic", f"{module.name}ParameterNode"]
    missing = [name for name in expected if name not in classes]
    assert not missing, f"{relative(module.script)} does not define {missing}"


def test_common_module_is_hidden() -> None:
    assert is_hidden(ModuleFiles(COMMON_MODULE)), f"{COMMON_MODULE}.py must set self.parent.hidden = True"


def test_visible_module_depends_on_common(visible_module: ModuleFiles) -> None:
    assert not is_hidden(visible_module), f"{relative(visible_module.script)} sets self.parent.hidden = True"
    dependencies = parent_settings(visible_module).get("dependencies")
    assert dependencies is not None, (
        f"{relative(visible_module.script)} does not set self.parent.dependencies"
    )
    assert COMMON_MODULE in ast.literal_eval(dependencies), (
        f"{relative(visible_module.script)}: self.parent.dependencies does not list {COMMON_MODULE!r}"
    )


def test_ui_file_is_designer_xml_for_its_module(visible_module: ModuleFiles) -> None:
    path = visible_module.ui
    assert path.is_file(), f"{relative(path)} is missing"
    root = ElementTree.parse(path).getroot()
    assert root.tag == "ui" and root.get("version") == "4.0", (
        f'{relative(path)}: root is not <ui version="4.0">'
    )
    assert root.findtext("class") == visible_module.name, (
        f"{relative(path)}: <class> is not {visible_module.name}"
    )
    top = root.find("widget")
    assert top is not None and top.get("name") == visible_module.name, (
        f"{relative(path)}: the top-level widget is not named {visible_module.name}"
    )
    assert top.get("class") == "qMRMLWidget", f"{relative(path)}: the top-level widget is not a qMRMLWidget"


def test_ui_uses_known_widget_classes(ui_file: Path) -> None:
    root = ElementTree.parse(ui_file).getroot()
    used = {element.get("class") for element in root.iter() if element.tag in ("widget", "layout")}
    unknown = sorted(used - KNOWN_WIDGET_CLASSES)
    assert not unknown, (
        f"{relative(ui_file)} uses classes that are not known Qt, CTK or Slicer widgets: {unknown}"
    )
    declared = {
        custom.findtext("class"): (custom.findtext("extends"), custom.findtext("header"))
        for custom in root.iter("customwidget")
    }
    for class_name in sorted(used - KNOWN_QT_CLASSES):
        assert class_name in declared, f"{relative(ui_file)}: {class_name} is not declared in <customwidgets>"
    for class_name, (extends, header) in sorted(declared.items()):
        assert class_name in KNOWN_WIDGET_CLASSES, (
            f"{relative(ui_file)}: custom widget {class_name} is unknown"
        )
        assert extends in KNOWN_QT_CLASSES, (
            f"{relative(ui_file)}: {class_name} extends unknown class {extends}"
        )
        assert header == f"{class_name}.h", f"{relative(ui_file)}: {class_name} header is {header}"


def test_mrml_widgets_receive_the_scene(ui_file: Path) -> None:
    root = ElementTree.parse(ui_file).getroot()
    top_name = root.find("widget").get("name")
    connected = {
        connection.findtext("receiver")
        for connection in root.iter("connection")
        if connection.findtext("sender") == top_name
        and connection.findtext("signal") == SCENE_SIGNAL
        and connection.findtext("slot") == SCENE_SLOT
    }
    for name, class_name in sorted(ui_widget_classes(ui_file).items()):
        if class_name in KNOWN_SLICER_CLASSES and name != top_name:
            assert name in connected, (
                f"{relative(ui_file)}: {name} ({class_name}) gets no {top_name} {SCENE_SIGNAL} -> "
                f"{SCENE_SLOT} connection, so it never sees the scene"
            )


def test_widget_code_uses_only_widgets_of_its_ui(visible_module: ModuleFiles) -> None:
    widgets = ui_widget_classes(visible_module.ui)
    classes = all_module_classes()
    widget_class = f"{visible_module.name}Widget"
    assert widget_class in classes, f"{relative(visible_module.script)} does not define {widget_class}"
    missing = []
    for class_name in class_with_ancestors(widget_class):
        script, class_def = classes[class_name]
        missing += [
            f"{relative(visible_module.ui)} has no widget named {name!r}, "
            f"used as self.ui.{name} in {relative(script)} (class {class_name})"
            for name in sorted(self_ui_names(class_def) - widgets.keys())
        ]
    assert not missing, "\n".join(missing)


def test_every_class_using_self_ui_is_part_of_a_panel() -> None:
    panel_classes = {
        class_name for name in visible_modules() for class_name in class_with_ancestors(f"{name}Widget")
    }
    for class_name, (script, class_def) in sorted(all_module_classes().items()):
        used = self_ui_names(class_def)
        assert not used or class_name in panel_classes, (
            f"{relative(script)}: class {class_name} uses self.ui.{sorted(used)[0]} but no module widget "
            "derives from it, so no .ui file is checked against it"
        )


def test_slicer_parameter_names_are_parameter_node_fields(visible_module: ModuleFiles) -> None:
    node_class_name = f"{visible_module.name}ParameterNode"
    node_class = classes_in(visible_module.script).get(node_class_name)
    assert node_class is not None, f"{relative(visible_module.script)} does not define {node_class_name}"
    assert "parameterNodeWrapper" in decorator_names(node_class), (
        f"{relative(visible_module.script)}: {node_class_name} is not decorated with @parameterNodeWrapper"
    )
    fields = annotated_fields(node_class)
    root = ElementTree.parse(visible_module.ui).getroot()
    for widget in root.iter("widget"):
        for prop in widget.findall("property[@name='SlicerParameterName']"):
            parameter = prop.findtext("string")
            assert parameter in fields, (
                f"{relative(visible_module.ui)}: widget {widget.get('name')} has SlicerParameterName "
                f"{parameter!r}, which is not a field of {node_class_name} in "
                f"{relative(visible_module.script)} (fields: {sorted(fields)})"
            )
            assert prop.get("stdset") == "0", (
                f"{relative(visible_module.ui)}: SlicerParameterName of {widget.get('name')} must be a "
                'dynamic property (stdset="0")'
            )


def test_parameter_node_fields_are_parameters_dataclass_fields(visible_module: ModuleFiles) -> None:
    parameters_file = visible_module.folder / f"{visible_module.name}Lib" / "parameters.py"
    if not parameters_file.is_file():
        pytest.skip(f"{relative(parameters_file)} does not exist")
    dataclass_defs = [
        class_def
        for class_def in classes_in(parameters_file).values()
        if "dataclass" in decorator_names(class_def)
    ]
    assert len(dataclass_defs) == 1, (
        f"{relative(parameters_file)} must define one parameters dataclass, "
        f"found {[class_def.name for class_def in dataclass_defs]}"
    )
    parameters_class = dataclass_defs[0]
    parameter_types = {
        name: value_type(annotation) for name, annotation in field_annotations(parameters_class).items()
    }
    node_class_name = f"{visible_module.name}ParameterNode"
    node_class = classes_in(visible_module.script).get(node_class_name)
    assert node_class is not None, f"{relative(visible_module.script)} does not define {node_class_name}"
    node_fields = field_annotations(node_class)
    panel_only = PANEL_ONLY_FIELDS.get(visible_module.name, {})
    stale = sorted(set(panel_only) - set(node_fields))
    assert not stale, (
        f"PANEL_ONLY_FIELDS lists {stale} for {visible_module.name}: not fields of {node_class_name}"
    )
    problems = []
    for name, annotation in node_fields.items():
        if is_node_reference(annotation) or name in panel_only:
            continue
        if name not in parameter_types:
            problems.append(
                f"{relative(visible_module.script)}: {node_class_name}.{name} is not a field of "
                f"{parameters_class.name} in {relative(parameters_file)}: use the dataclass's field name, "
                "or list it in PANEL_ONLY_FIELDS of this test with the reason it is the panel's own"
            )
        elif value_type(annotation) != parameter_types[name]:
            problems.append(
                f"{relative(visible_module.script)}: {node_class_name}.{name} holds "
                f"{value_type(annotation)}, but {parameters_class.name}.{name} holds {parameter_types[name]}"
            )
    assert not problems, "\n".join(problems)


def test_cmake_lists_python_files_on_disk(module: ModuleFiles) -> None:
    assert cmake_list(module, "MODULE_NAME") == [module.name], (
        f"{relative(module.cmake)}: MODULE_NAME differs"
    )
    listed = cmake_list(module, "MODULE_PYTHON_SCRIPTS")
    lib_files = files_under(module.folder / f"{module.name}Lib")
    on_disk = {module.script} | {path for path in lib_files if path.suffix == ".py"}
    expected = {path.relative_to(module.folder).as_posix() for path in on_disk}
    problems = listing_differences(module, "MODULE_PYTHON_SCRIPTS", listed, expected)
    assert not problems, "\n".join(problems)


def test_cmake_lists_resources_on_disk(module: ModuleFiles) -> None:
    listed = cmake_list(module, "MODULE_PYTHON_RESOURCES")
    lib_data = {path for path in files_under(module.folder / f"{module.name}Lib") if path.suffix != ".py"}
    on_disk = files_under(module.folder / "Resources") | lib_data
    expected = {path.relative_to(module.folder).as_posix() for path in on_disk}
    problems = listing_differences(module, "MODULE_PYTHON_RESOURCES", listed, expected)
    assert not problems, "\n".join(problems)
    required = [module.icon, module.folder / "Resources" / "requirements.txt"]
    if module.name != COMMON_MODULE:
        required.append(module.ui)
    for path in required:
        assert path.is_file(), f"{relative(path)} is missing"


def test_cmake_builds_module_with_tests(module: ModuleFiles) -> None:
    text = re.sub(r"#[^\n]*", "", module.cmake.read_text(encoding="utf-8"))
    build = cmake_commands(module.cmake, "slicerMacroBuildScriptedModule")
    assert build, f"{relative(module.cmake)} does not call slicerMacroBuildScriptedModule"
    assert build[0] == [
        "NAME",
        "${MODULE_NAME}",
        "SCRIPTS",
        "${MODULE_PYTHON_SCRIPTS}",
        "RESOURCES",
        "${MODULE_PYTHON_RESOURCES}",
        "WITH_GENERIC_TESTS",
    ], f"{relative(module.cmake)}: slicerMacroBuildScriptedModule arguments differ from the template's"
    testing_block = re.search(r"if\s*\(\s*BUILD_TESTING\s*\)(.*?)endif\s*\(", text, flags=re.DOTALL)
    assert testing_block and re.search(
        r"slicer_add_python_unittest\s*\(\s*SCRIPT\s+\$\{MODULE_NAME\}\.py\s*\)", testing_block.group(1)
    ), (
        f"{relative(module.cmake)}: no slicer_add_python_unittest(SCRIPT ${{MODULE_NAME}}.py) "
        "inside if(BUILD_TESTING)"
    )


@pytest.mark.parametrize(
    "icon",
    [REPOSITORY_ROOT / "SpatioTemporalExtension.png"]
    + [ModuleFiles(name).icon for name in extension_module_names()],
    ids=relative,
)
def test_icon_is_128_pixel_png(icon: Path) -> None:
    assert icon.is_file(), f"{relative(icon)} is missing"
    assert png_size(icon) == (ICON_SIZE_PX, ICON_SIZE_PX), (
        f"{relative(icon)} is not {ICON_SIZE_PX} x {ICON_SIZE_PX} pixels"
    )
