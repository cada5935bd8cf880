"""Architecture surgery on timm models: per-stage skip scales, layer groups, RepVGG fusion check."""
from .layers import layer_groups
from .repvgg import repvgg_equivalence
from .skips import (SCALABLE, check_scales, describe, rolss_scales, set_stage_scales, stage_scales,
                    toggleable)
from .stages import family_of, stages

__all__ = ["SCALABLE", "check_scales", "describe", "family_of", "layer_groups", "repvgg_equivalence",
           "rolss_scales", "set_stage_scales", "stage_scales", "stages", "toggleable"]
