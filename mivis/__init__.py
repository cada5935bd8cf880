"""mivis: an interactive explorer of model-inversion attacks and architecture-level defenses."""
import os as _os

# OpenMP threads sleep instead of spinning while they wait for work, so a long job leaves the cores it
# does not use to the other programs on a busy laptop. It must be set before torch loads libgomp.
_os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")

__version__ = "0.1.0"

# the Python API (mivis/api.py), re-exported lazily so that `import mivis` stays light until it is used:
# mivis.add_model, mivis.attack, mivis.judge, mivis.analyse, mivis.compare, mivis.delta, mivis.export_split, ...
_API = ("add_model", "train_model", "attack", "judge", "analyse", "compare", "delta", "export_split", "classroom_setup",
        "load_model")


def __getattr__(name: str):
    if name in _API:
        from . import api
        return getattr(api, name)
    raise AttributeError(f"module 'mivis' has no attribute {name!r}")
