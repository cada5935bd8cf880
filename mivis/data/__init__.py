"""Face data: the embedded ORL faces, bring-your-own folders, and a synthetic set for tests.

Images are float32 tensors (N, C, H, W) scaled to [-1, 1]; labels are int64 class indices.
`load_split(config)` is the single entry point; `DATA_PARAMS` declares its knobs. Folder data is
decoded once into an on-disk cache and its subsets hold `LazyImages` (read per batch); loops take
batches through `batches` / `sequential`, which slice in-memory tensors exactly as before.
"""
from ._split import DATA_PARAMS, DataError, FaceSplit, Subset, load_split, to_uint8
from ._lazy import LazyImages, batches, is_lazy, sequential
from ._orl import ORL_SHA256, orl_folder

__all__ = ["DATA_PARAMS", "DataError", "FaceSplit", "Subset", "load_split", "to_uint8",
           "LazyImages", "batches", "is_lazy", "sequential", "ORL_SHA256", "orl_folder"]
