"""mivis: an interactive explorer of model-inversion attacks and architecture-level defenses."""
__version__ = "0.1.0"
