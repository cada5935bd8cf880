"""Why defenses work: Fisher information per layer, gradient flow through skips, attributions,
likelihood histograms across runs."""
from .attributions import METHODS as ATTRIBUTION_METHODS, attribute, normalise_for_overlay
from .fisher import concentration, fisher_per_layer
from .gradflow import gradient_flow
from .layers import LAYERS_PARAMS, layers_run

__all__ = ["ATTRIBUTION_METHODS", "LAYERS_PARAMS", "attribute", "concentration", "fisher_per_layer",
           "gradient_flow", "layers_run", "normalise_for_overlay"]
