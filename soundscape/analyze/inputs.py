"""Finding the recordings of a run: files, folders walked recursively, and glob patterns."""

from __future__ import annotations

import glob
import os
from dataclasses import dataclass
from pathlib import Path

from soundscape.audio import AUDIO_EXTENSIONS

__all__ = ["AUDIO_EXTENSIONS", "InputFile", "find_inputs"]



@dataclass(frozen=True)
class InputFile:
    """A recording to analyse.

    Attributes:
        path (str): absolute path.
        rel (str): output location relative to ``OUT``, without extension (``folder/stem``): relative to
            the folder argument it was found under, or to the non-glob prefix of its pattern.
    """

    path: str
    rel: str


def _glob_root(pattern: str) -> Path:
    parts = Path(pattern).parts
    root = []
    for part in parts:
        if glob.has_magic(part):
            break
        root.append(part)
    return Path(*root) if root else Path(".")


def _audio(path: Path) -> bool:
    return path.suffix.lower() in AUDIO_EXTENSIONS and not path.name.startswith(".")


def find_inputs(inputs: list[str]) -> list[InputFile]:
    """Expand the inputs into a sorted, de-duplicated list of audio files.

    A folder is walked recursively for files with an audio extension (:data:`AUDIO_EXTENSIONS`); a glob
    pattern (``*``, ``?``, ``[...]``, ``**``) keeps its audio matches; a named file is taken whatever
    its extension (a corrupt one then lands in ``failures.csv``).

    Raises:
        ValueError: an input matches nothing, or two inputs would write the same output names.
    """
    found: dict[str, InputFile] = {}
    for item in inputs:
        matches: list[tuple[Path, Path]] = []  # (file, root its output name is relative to)
        if glob.has_magic(item):
            root = _glob_root(item)
            matches = [(Path(p), root) for p in glob.glob(item, recursive=True) if _audio(Path(p))]
        elif os.path.isdir(item):
            root = Path(item)
            matches = [(Path(d) / f, root) for d, _, files in os.walk(item) for f in files if _audio(Path(f))]
        elif os.path.exists(item):
            matches = [(Path(item), Path(item).parent)]
        else:
            raise ValueError(f"input {item!r} does not exist")
        if not matches:
            raise ValueError(f"input {item!r} holds no audio files ({', '.join(sorted(AUDIO_EXTENSIONS))})")
        for path, root in matches:
            absolute = os.path.abspath(path)
            rel = path.relative_to(root).with_suffix("").as_posix()
            found.setdefault(absolute, InputFile(absolute, rel))
    by_rel: dict[str, str] = {}
    for f in found.values():
        other = by_rel.setdefault(f.rel, f.path)
        if other != f.path:
            raise ValueError(f"inputs {other!r} and {f.path!r} would both write outputs named {f.rel!r}; "
                             "analyse them in separate runs or rename one")
    return sorted(found.values(), key=lambda f: f.rel)
