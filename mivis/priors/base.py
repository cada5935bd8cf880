"""The prior registry, its parameter declarations, and the loaded-prior container.

Four prior types, all trained on the public identities only:
  gmi    general GAN prior (GMI): unconditional G, realness-only D.
  kedmi  inversion-specific GAN (KEDMI): D also learns the target's soft labels on public data.
  plgmi  pseudo-label conditional GAN (PLG-MI): public images pseudo-labelled by the target
         (top-k per class) train a class-conditional G and a projection D.
  pca    principal components of the public faces (pca.py): a linear Gaussian prior, no training loop.
"""
from __future__ import annotations

from dataclasses import dataclass

import torch

from ..params import Param, ParamSet
from ..registry import Registry
from .nets import RESOLUTIONS, Discriminator, Generator
from .pca import PCA_PARAMS, build_pca_nets, pca_net_config

PRIORS = Registry("prior")

# Method version of each prior type's training (2: KEDMI's objective, see gan_train.py); a sweep's prior
# step records it so reuse never mixes versions.
METHOD_VERSIONS = {"kedmi": 2}

LOSSES = ("hinge", "wgan-gp")

GAN_PARAMS = ParamSet([
    Param("iterations", int, 9000, "generator updates (the ORL recipe: ~9,000 at batch 64, ~4 min on an H100)",
          min=1, max=1_000_000),
    Param("batch_size", int, 64, "images per step", min=2, max=4096),
    Param("loss", str, "hinge", "GAN loss: hinge with a spectral-norm D (the recipe that works on 200 faces) "
          "or WGAN-GP (the GMI paper's; D without spectral norm, gradient penalty 10)", choices=LOSSES),
    Param("d_steps", int, 1, "discriminator updates per generator update (WGAN-GP papers use 5)", min=1, max=10),
    Param("lr_g", float, 2e-4, "generator learning rate (Adam)", min=1e-6, max=1.0),
    Param("lr_d", float, 2e-4, "discriminator learning rate (Adam)", min=1e-6, max=1.0),
    Param("beta1", float, 0.5, "Adam beta1 of both networks", min=0.0, max=0.999),
    Param("z_dim", int, 100, "latent dimension", min=2, max=1024),
    Param("g_width", int, 32, "generator width (64 px, 32: ~0.8M parameters)", min=4, max=512),
    Param("d_width", int, 32, "discriminator width", min=4, max=512),
    Param("ema", float, 0.999, "exponential moving average of G's weights (0 = off)", min=0.0, max=0.99999),
    Param("diffaug", str, "color,translation,cutout", "differentiable augmentation of real and fake images "
          "(comma-separated subset of color, translation, cutout; 'none' = off)"),
    Param("flip", bool, True, "random horizontal flips of the public images"),
    Param("seed", int, 0, "seed of initialisation, batches, latents and augmentation", min=0, max=2**31 - 1),
    Param("device", str, "auto", "where to train", choices=("auto", "cpu", "cuda")),
    Param("sample_every", int, 0, "save a sample grid every N iterations (0 = only at the end)", min=0,
          max=1_000_000),
])

KEDMI_OBJECTIVES = ("kedmi", "hinge-nonpaper")

KEDMI_PARAMS = ParamSet([
    Param("objective", str, "kedmi", "'kedmi' = KEDMI's code: D's realness = logsumexp of its class logits, "
          "trained by the semi-supervised term; G = feature matching + entropy_weight x entropy summed over the "
          "batch. 'hinge-nonpaper' = mivis v1: a separate hinge realness head, G hinge loss (+ fm_weight x feature "
          "matching, + entropy averaged over the batch); not the paper's", choices=KEDMI_OBJECTIVES),
    Param("cls_weight", float, 1.0, "weight of the soft-label loss: D's class head vs the target's softmax "
          "on public images (KEDMI: 1)", min=0.0, max=100.0),
    Param("entropy_weight", float, 1e-4, "G: weight of the entropy of D's class prediction on fakes "
          "(KEDMI's code: 1e-4, on the entropy summed over the batch)", min=0.0, max=10.0),
    Param("fm_weight", float, 0.0, "hinge-nonpaper only: G's weight of feature matching on D's features (the "
          "kedmi objective always uses feature matching with weight 1, as KEDMI)", min=0.0, max=100.0),
])

PLGMI_PARAMS = ParamSet([
    Param("top_k", int, 10, "public images pseudo-labelled per target class by the target's confidence "
          "(paper: 30 on large public sets; ORL has only 200 public images)", min=1, max=100000),
    Param("inv_weight", float, 0.2, "G: weight of the max-margin loss of the target on augmented fakes "
          "(PLG-MI's alpha)", min=0.0, max=100.0),
])


def check_policy(policy: str) -> str:
    from ..params import ParamError
    from .diffaug import POLICIES
    if policy.strip().lower() in ("", "none"):
        return ""
    parts = [p.strip() for p in policy.split(",") if p.strip()]
    bad = [p for p in parts if p not in POLICIES]
    if bad:
        raise ParamError(f"diffaug: {', '.join(bad)} not allowed; choose a comma-separated subset of "
                         f"{', '.join(POLICIES)} or none")
    return ",".join(parts)


def net_config(ptype: str, p: dict, img_size: int, channels: int, num_classes: int = 0,
               n_public: int = 0) -> dict:
    """Everything needed to rebuild G and D from scratch (stored with the weights)."""
    from ..params import ParamError
    if ptype == "pca":
        return pca_net_config(p, n_public, img_size, channels)
    if img_size not in RESOLUTIONS:
        raise ParamError(f"image_size: GAN priors support {', '.join(map(str, RESOLUTIONS))} px, not {img_size}")
    head = {"gmi": "none", "kedmi": "classes", "plgmi": "projection"}[ptype]
    return {"type": ptype, "z_dim": p["z_dim"], "img_size": img_size, "channels": channels,
            "g_width": p["g_width"], "d_width": p["d_width"], "num_classes": num_classes if head != "none" else 0,
            "conditional": ptype == "plgmi", "d_head": head, "spectral_norm": p["loss"] == "hinge",
            "loss": p["loss"], **({"objective": p.get("objective", "hinge-nonpaper")} if ptype == "kedmi" else {})}


def build_nets(cfg: dict) -> tuple[Generator, Discriminator]:
    if cfg["type"] == "pca":
        return build_pca_nets(cfg)
    g = Generator(cfg["z_dim"], cfg["img_size"], cfg["channels"], cfg["g_width"],
                  cfg["num_classes"] if cfg["conditional"] else 0)
    d = Discriminator(cfg["img_size"], cfg["channels"], cfg["d_width"], cfg["num_classes"], cfg["d_head"],
                      sn=cfg["spectral_norm"])
    return g, d


@dataclass
class Prior:
    """A loaded prior: G (EMA weights, eval mode), D (spectral norm folded), and its config."""
    G: Generator
    D: Discriminator
    config: dict      # net config (type, z_dim, img_size, channels, num_classes, ...)
    record: dict      # {"run": id, "data": data config, "public": names, "target": parent target or None}

    @property
    def type(self) -> str:
        return self.config["type"]

    @property
    def conditional(self) -> bool:
        return bool(self.config["conditional"])

    @property
    def z_dim(self) -> int:
        return self.config["z_dim"]

    @property
    def z_bound(self) -> float | None:
        """The box |z| <= bound the prior's latents live in (None: unbounded, as the GAN priors' normal z)."""
        return self.config.get("z_bound")

    def to(self, device) -> "Prior":
        from ..device import prepare
        self.G = prepare(self.G, device).eval()
        self.D = prepare(self.D, device).eval()
        return self

    @torch.no_grad()
    def sample(self, n: int, seed: int = 0, y: torch.Tensor | None = None) -> torch.Tensor:
        dev = next(self.G.parameters()).device
        z = torch.randn(n, self.z_dim, generator=torch.Generator().manual_seed(seed)).to(dev)
        if self.conditional and y is None:
            y = torch.arange(n, device=dev) % self.config["num_classes"]
        return self.G(z, y.to(dev) if y is not None else None).float()


def register_prior_types() -> None:
    if "gmi" in PRIORS:
        return
    PRIORS.register("gmi", "gmi", params=GAN_PARAMS, needs_target=False,
                    help="general GAN prior (GMI): public faces only")
    PRIORS.register("kedmi", "kedmi", params=GAN_PARAMS + KEDMI_PARAMS, needs_target=True,
                    help="inversion-specific GAN (KEDMI): D also learns the target's soft labels")
    PRIORS.register("plgmi", "plgmi", params=GAN_PARAMS + PLGMI_PARAMS, needs_target=True,
                    help="pseudo-label conditional GAN (PLG-MI): public images labelled by the target")
    PRIORS.register("pca", "pca", params=PCA_PARAMS, needs_target=False,
                    help="principal components of the public faces (probabilistic PCA): fitted in seconds, "
                         "expresses more private faces than a small GAN, blurrier")


register_prior_types()
