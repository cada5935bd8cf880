"""Where a workspace is when none is named: the ground floor (the registry and the data layer both read it)."""
from pathlib import Path

DEFAULT_WORKSPACE = Path(__file__).resolve().parent.parent / "workspace"
ENV_VAR = "MIVIS_WORKSPACE"
