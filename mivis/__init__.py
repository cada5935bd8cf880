"""mivis: an interactive explorer of model-inversion attacks and architecture-level defenses."""
import os as _os

# OpenMP threads sleep instead of spinning while they wait for work, so a long job leaves the cores it
# does not use to the other programs on a busy laptop. It must be set before torch loads libgomp.
_os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")

__version__ = "0.1.0"

# the Python API is mivis.api (`from mivis import api`): not re-exported here, so the package stays on the
# ground floor and `import mivis` loads nothing else
