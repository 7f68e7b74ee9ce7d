"""Where models are read from and written to (one rule for every verb).

- **Bundled store** (``model_store/default``, inside the installed package): the demo model shipped with the
  package. Read-only: :class:`~model_store.ModelStore` refuses to write into it (set
  ``SOUNDSCAPE_WRITE_BUNDLED=1`` to rebuild it from a checkout).
- **User store**: ``$SOUNDSCAPE_STORE_PATH`` when set, else ``models`` in the platform's user data folder
  (platformdirs: ``~/.local/share/soundscape/models`` on Linux, ``~/Library/Application
  Support/soundscape/models`` on macOS, ``%LOCALAPPDATA%\\soundscape\\models`` on Windows). ``export``,
  ``retrain``, ``build-default-model`` and ``models import`` write there unless given ``--store``.
- **Serving** (``serve``, ``analyze``, ``soundscape.predict``): a store given explicitly (``--store``, the
  ``store_path`` setting or ``$SOUNDSCAPE_STORE_PATH``) is used as given; otherwise the user store when it has
  a production version of the model, else the bundled store.
"""

from __future__ import annotations

import argparse
import json
import os
from pathlib import Path

__all__ = ["STORE_ENV", "WRITE_BUNDLED_ENV", "bundled_store_path", "is_bundled", "serving_store_path",
           "user_store_path", "add_write_store_argument"]

STORE_ENV = "SOUNDSCAPE_STORE_PATH"
WRITE_BUNDLED_ENV = "SOUNDSCAPE_WRITE_BUNDLED"
APP_NAME = "soundscape"
POINTER_FILE = "production.json"  # <root>/<name>/production.json: which version is production


def bundled_store_path() -> Path:
    """The bundled, read-only store shipped with the package (``model_store/default``)."""
    return Path(__file__).resolve().parent / "default"


def user_store_path() -> Path:
    """The store that writes go to: ``$SOUNDSCAPE_STORE_PATH``, else ``<user data dir>/soundscape/models``."""
    if os.environ.get(STORE_ENV):
        return Path(os.environ[STORE_ENV]).expanduser()
    from platformdirs import user_data_path

    return user_data_path(APP_NAME, appauthor=False) / "models"


def is_bundled(root: str | os.PathLike) -> bool:
    """Whether ``root`` is the bundled store."""
    return Path(root).resolve() == bundled_store_path().resolve()


def _has_production(root: Path, name: str) -> bool:
    try:
        return json.loads((root / name / POINTER_FILE).read_text(encoding="utf-8")).get("version") is not None
    except (OSError, ValueError, AttributeError):
        return False


def serving_store_path(name: str) -> Path:
    """The store ``serve`` and ``analyze`` read model ``name`` from when none is given: the user store when it
    has a production version of ``name``, else the bundled store."""
    user = user_store_path()
    return user if _has_production(user, name) else bundled_store_path()


def add_write_store_argument(parser: argparse.ArgumentParser) -> None:
    """``--store`` of a verb that writes models: the user store by default, shown in ``--help``."""
    parser.add_argument(
        "--store", type=Path, default=user_store_path(),
        help=f"Model store to write to (default: the user store, {user_store_path()}: ${STORE_ENV} or the user "
             "data folder). The bundled store is read-only; serve and analyze read the user store when it has a "
             "production model, else the bundled one.")
