"""Output folders that are written completely or not at all, and the ``summary.json`` beside them.

Files are first written into a staging folder next to the destination; only when the job has
succeeded are they moved into place. A failure, a cancellation or an output that would overwrite an
input leaves the destination untouched.
"""

from __future__ import annotations

import json
import platform
import shutil
import tempfile
import time
from collections.abc import Iterable
from pathlib import Path
from types import TracebackType
from typing import Any

import numpy as np

from . import __version__
from .errors import InputError


class OutputFolder:
    """Stage outputs for ``destination`` and move them there on success.

    Parameters
    ----------
    destination : str or Path
        The output folder (created if needed).
    input_paths : iterable of str or Path
        Files the job reads; no output may replace one of them.

    Examples
    --------
    >>> with OutputFolder(out_dir, [input_path]) as out:   # doctest: +SKIP
    ...     write_node(ktrans_node, out.path("Ktrans.nrrd"))
    """

    def __init__(self, destination: str | Path, input_paths: Iterable[str | Path] = ()) -> None:
        self.destination = Path(destination)
        self._inputs = {Path(p).resolve() for p in input_paths}
        if self.destination.exists() and not self.destination.is_dir():
            raise InputError(f"output folder '{self.destination}' is a file: give a folder path for --out")
        if self.destination.resolve() in self._inputs:
            raise InputError(f"output folder '{self.destination}' is an input: choose another --out folder")
        self._staging: Path | None = None

    def __enter__(self) -> OutputFolder:
        parent = self.destination.resolve().parent
        try:
            parent.mkdir(parents=True, exist_ok=True)
            self._staging = Path(tempfile.mkdtemp(prefix=f".{self.destination.name}-partial-", dir=parent))
        except OSError as error:
            raise InputError(f"cannot create output folder '{self.destination}' ({error.strerror}): "
                             "choose a writable location for --out") from None
        return self

    def path(self, name: str) -> Path:
        """Where to write the output file ``name`` during the job."""
        if self._staging is None:
            raise RuntimeError("OutputFolder.path() is only valid inside the 'with' block")
        return self._staging / name

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        try:
            if exc_type is None:
                self._commit()
        finally:
            shutil.rmtree(self._staging, ignore_errors=True)

    def _commit(self) -> None:
        staged = sorted(self._staging.iterdir())
        targets = [self.destination / item.name for item in staged]
        clashes = [target for target in targets if target.resolve() in self._inputs]
        if clashes:
            raise InputError(
                f"writing '{clashes[0]}' would overwrite an input: choose another --out folder"
            )
        self.destination.mkdir(parents=True, exist_ok=True)
        for item, target in zip(staged, targets, strict=True):
            if target.is_dir():
                shutil.rmtree(target)
            item.replace(target)


def _json_default(value: Any) -> Any:
    if isinstance(value, np.generic):
        return value.item()
    if isinstance(value, np.ndarray):
        return value.tolist()
    if isinstance(value, Path):
        return str(value)
    raise TypeError(f"{type(value).__name__} is not JSON serialisable")


def write_summary(path: str | Path, command: str, *, inputs: dict, parameters: dict, results: dict,
                  started: float) -> Path:
    """Write ``summary.json``: inputs, parameters, results and counts, software version and timing.

    Parameters
    ----------
    started : float
        ``time.perf_counter()`` value taken when the job started; the elapsed seconds are recorded.
    """
    summary = {
        "command": command,
        "software": {"slicer_spatiotemporal": __version__, "python": platform.python_version(),
                     "numpy": np.__version__},
        "inputs": inputs,
        "parameters": parameters,
        "results": results,
        "elapsed_s": round(time.perf_counter() - started, 3),
        "finished_utc": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
    }
    path = Path(path)
    path.write_text(json.dumps(summary, indent=2, default=_json_default) + "\n")
    return path
