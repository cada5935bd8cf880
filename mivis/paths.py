"""Where mivis's shipped files are: assets/ of a clone (also under `pip install -e .`), or the copy an
installed package carries as mivis/_assets/ (`pip install .`; pyproject.toml + setup.py put it there).

Only this module decides; every reader of shipped files (classroom models, priors, dlib galleries, the demo)
asks `assets_dir()`. The default workspace follows the same split: a clone keeps ./workspace beside the
code (as before), an installed package uses the current folder's ./workspace.
"""
from __future__ import annotations

from pathlib import Path

PACKAGE = Path(__file__).resolve().parent
INSTALLED_ASSETS = PACKAGE / "_assets"   # what `pip install .` ships inside the package
CLONE_ASSETS = PACKAGE.parent / "assets"  # a clone or an editable install


def installed() -> bool:
    """True when this is a built, installed copy (the assets travel inside the package)."""
    return INSTALLED_ASSETS.is_dir()


def assets_dir() -> Path:
    """The shipped assets folder (classroom/, priors/, dlib/, demo/); the clone's path when neither exists,
    so a message names the folder a clone would have."""
    return INSTALLED_ASSETS if installed() else CLONE_ASSETS


def default_workspace() -> Path:
    """./workspace: beside the code in a clone (unchanged), in the current folder for an installed package."""
    return Path.cwd() / "workspace" if installed() else PACKAGE.parent / "workspace"


DEFAULT_WORKSPACE = default_workspace()  # where a workspace is when none is named
ENV_VAR = "MIVIS_WORKSPACE"
