"""The ``spatiotemporal`` command: ``info``, ``demo`` and one subcommand per module.

Modules register subcommands through the ``spatiotemporal.commands`` entry-point group: each entry
point names a :class:`Command`. Bad input ends with a one-line message and exit status 2; a
cancelled job (Ctrl+C) with status 130; nothing half-written is left behind.
"""

from __future__ import annotations

import argparse
import sys
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from importlib.metadata import entry_points
from pathlib import Path

from . import __version__
from .context import MRMLContext
from .errors import InputError, ProcessingCancelled
from .progress import Progress

ENTRY_POINT_GROUP = "spatiotemporal.commands"


@dataclass
class Runtime:
    """What a running subcommand gets besides its arguments: the scene, progress and output."""

    quiet: bool = False
    _context: MRMLContext | None = field(default=None, repr=False)

    @property
    def context(self) -> MRMLContext:
        """A headless MRML context, created on first use."""
        if self._context is None:
            self._context = MRMLContext.create_headless()
        return self._context

    def progress(self, description: str) -> Progress:
        """A progress reporter drawing a terminal bar (nothing when ``--quiet``)."""
        if self.quiet:
            return Progress()
        from tqdm import tqdm

        bar = tqdm(total=100, desc=description, unit="%", leave=False, file=sys.stderr,
                   bar_format="{desc}: {percentage:3.0f}%|{bar}| {postfix}")

        def update(fraction: float, message: str) -> None:
            bar.n = round(100 * fraction)
            bar.set_postfix_str(message, refresh=False)
            bar.refresh()
            if fraction >= 1.0:
                bar.close()

        return Progress(update)

    def say(self, text: str) -> None:
        """Print a result line for the user (always shown; results are not progress)."""
        print(text, flush=True)


@dataclass(frozen=True)
class Command:
    """A subcommand of ``spatiotemporal``.

    Parameters
    ----------
    name : str
        Subcommand name, e.g. ``"dce"``.
    help : str
        One-line description for ``--help``.
    add_arguments : callable(parser)
        Adds the subcommand's options.
    run : callable(args, runtime)
        Does the work; raises ``InputError`` for bad input.
    demo : callable(out_dir, runtime), optional
        Runs the module on built-in synthetic data, writing into ``out_dir`` and printing results.
    """

    name: str
    help: str
    add_arguments: Callable[[argparse.ArgumentParser], None]
    run: Callable[[argparse.Namespace, Runtime], None]
    demo: Callable[[Path, Runtime], None] | None = None


def registered_commands() -> list[Command]:
    """Subcommands contributed by installed modules, in name order."""
    commands = [entry.load() for entry in entry_points(group=ENTRY_POINT_GROUP)]
    return sorted(commands, key=lambda command: command.name)


# --------------------------------------------------------------------------- built-in commands


def _add_info_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("input", help="4D series: .seq.nrrd, 4D .nrrd, 4D .nii/.nii.gz or a DICOM folder")
    parser.add_argument("--times", metavar="FILE", help="frame times, one value in seconds per line")
    parser.add_argument("--json", action="store_true", help="print the summary as JSON")


def _run_info(args: argparse.Namespace, runtime: Runtime) -> None:
    import json

    from .info import summarize_series
    from .io import read_series
    from .series import validate_series

    _, series = read_series(runtime.context, args.input, times_file=args.times)
    validate_series(series, require_times=False)
    summary = summarize_series(series)
    runtime.say(json.dumps(summary.to_dict(), indent=2) if args.json else summary.to_text())


def _add_demo_arguments(parser: argparse.ArgumentParser, module_names: Sequence[str]) -> None:
    parser.add_argument("modules", nargs="*", metavar="MODULE",
                        help="run only these modules' demos" + (f" ({', '.join(module_names)})" if module_names else ""))
    parser.add_argument("--out", default="spatiotemporal-demo", metavar="DIR",
                        help="folder for the demo outputs (default: ./spatiotemporal-demo)")


def _run_demo(args: argparse.Namespace, runtime: Runtime, commands: Sequence[Command]) -> None:
    available = {c.name: c for c in commands if c.demo is not None}
    unknown = sorted(set(args.modules) - set(available))
    if unknown:
        raise InputError(f"no demo named {', '.join(unknown)}: choose from {', '.join(available) or 'none installed'}")
    demos = [command for name, command in available.items() if not args.modules or name in args.modules]
    out = Path(args.out)
    if out.exists() and not out.is_dir():
        raise InputError(f"output folder '{out}' is a file: give a folder path for --out")
    if not demos:
        _run_builtin_demo(out, runtime)
        return
    for command in demos:
        runtime.say(f"== demo: {command.name} ==")
        command.demo(out / command.name, runtime)


def _run_builtin_demo(out: Path, runtime: Runtime) -> None:
    """Write a small synthetic 4D series and report what ``info`` reads back from the file."""
    from .info import summarize_series
    from .io import read_series, write_node
    from .outputs import OutputFolder
    from .sequences import add_volume_sequence
    from .synthetic import synthetic_series

    series = synthetic_series()
    sequence = add_volume_sequence(runtime.context, series.frames, series.times_s, series.geometry, series.name)
    with OutputFolder(out) as folder:
        write_node(sequence, folder.path("synthetic.seq.nrrd"))
    _, read_back = read_series(runtime.context, out / "synthetic.seq.nrrd")
    runtime.say(f"wrote {out / 'synthetic.seq.nrrd'}; no analysis module is installed yet, so here is its info:")
    runtime.say(summarize_series(read_back).to_text())


# --------------------------------------------------------------------------- entry point


def build_parser(commands: Sequence[Command]) -> argparse.ArgumentParser:
    """The argument parser with the built-in and the registered subcommands."""
    common = argparse.ArgumentParser(add_help=False)
    common.add_argument("--quiet", action="store_true", default=argparse.SUPPRESS, help="no progress bars")
    parser = argparse.ArgumentParser(
        prog="spatiotemporal",
        description="Quantitative maps and segmentations from 4D (3D + time) medical images.",
    )
    parser.add_argument("--version", action="version", version=f"%(prog)s {__version__}")
    parser.add_argument("--quiet", action="store_true", help="no progress bars")
    subparsers = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    info = subparsers.add_parser("info", parents=[common], help="frames, frame times, geometry and values of a 4D series")
    _add_info_arguments(info)
    info.set_defaults(handler=_run_info)
    demo = subparsers.add_parser("demo", parents=[common], help="run the modules on built-in synthetic data")
    _add_demo_arguments(demo, [c.name for c in commands if c.demo is not None])
    demo.set_defaults(handler=lambda args, runtime: _run_demo(args, runtime, commands))
    for command in commands:
        sub = subparsers.add_parser(command.name, parents=[common], help=command.help, description=command.help)
        command.add_arguments(sub)
        sub.set_defaults(handler=command.run)
    return parser


def _silence_vtk_messages() -> None:
    """Keep VTK's own error lines off the terminal; failures reach the user as InputError messages."""
    import vtk

    vtk.vtkObject.GlobalWarningDisplayOff()
    vtk.vtkLogger.SetStderrVerbosity(vtk.vtkLogger.VERBOSITY_OFF)


def main(argv: Sequence[str] | None = None, commands: Sequence[Command] | None = None) -> int:
    """Run the ``spatiotemporal`` command; return the exit status.

    ``commands`` replaces the installed modules' subcommands (to run a module that is not
    registered, e.g. in its tests).
    """
    parser = build_parser(registered_commands() if commands is None else commands)
    args = parser.parse_args(argv)
    runtime = Runtime(quiet=args.quiet)
    _silence_vtk_messages()
    started = time.perf_counter()
    try:
        args.handler(args, runtime)
    except InputError as error:
        print(f"spatiotemporal {args.command}: error: {error}", file=sys.stderr)
        return 2
    except (ProcessingCancelled, KeyboardInterrupt):
        print(f"spatiotemporal {args.command}: cancelled; nothing was written", file=sys.stderr)
        return 130
    if not runtime.quiet:
        print(f"[{args.command} finished in {time.perf_counter() - started:.1f} s]", file=sys.stderr)
    return 0


if __name__ == "__main__":
    sys.exit(main())
