"""Image priors trained on the public identities: GMI GAN, KEDMI GAN, PLG-MI conditional GAN.

`train_prior(type, params, data_cfg, target_run=...)` makes a registry run (kind "prior");
`load_prior(ws, run_id, device)` rebuilds it from its config; `import_prior` registers the
weights shipped in assets/priors/<name>/.
"""
from .base import GAN_PARAMS, PRIORS, Prior
from .store import PRESETS, export_prior, import_prior, load_prior, prepare_prior, shipped_priors, train_prior

__all__ = ["GAN_PARAMS", "PRIORS", "PRESETS", "Prior", "export_prior", "import_prior", "load_prior",
           "prepare_prior", "shipped_priors", "train_prior"]
