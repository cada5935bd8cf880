"""Face data: the embedded ORL faces, bring-your-own folders, and a synthetic set for tests.

Images are float32 tensors (N, C, H, W) scaled to [-1, 1]; labels are int64 class indices.
`load_split(config)` is the single entry point; `DATA_PARAMS` declares its knobs.
"""
from ._split import DATA_PARAMS, DataError, FaceSplit, Subset, load_split, to_uint8
from ._orl import ORL_SHA256, orl_folder

__all__ = ["DATA_PARAMS", "DataError", "FaceSplit", "Subset", "load_split", "to_uint8",
           "ORL_SHA256", "orl_folder"]
