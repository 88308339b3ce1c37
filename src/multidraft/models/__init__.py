"""Local models: offline loading, file checks, the shared cache, and the pair installed by set-up.

* :mod:`~multidraft.models.loading`: load a model or tokenizer from a local folder or ``.gguf`` file, offline;
* :mod:`~multidraft.models.files`: check GGUF, safetensors, config and tokenizer files before loading them;
* :mod:`~multidraft.models.cache`: the cache folder, atomic writes, file locks, checksummed entries;
* :mod:`~multidraft.models.bundled`: the bundled draft/target pair, assembled and converted once into the cache.
"""

from multidraft.models.bundled import (
    MODEL_REQUIREMENTS,
    PAIR,
    BundledModelsMissing,
    BundledPair,
    ModelSpec,
    bundled_pair,
    load_bundled_pair,
)
from multidraft.models.cache import CacheWriteError, cache_dir
from multidraft.models.files import DamagedModelFile
from multidraft.models.loading import (
    check_model,
    check_tokenizer,
    load_causal_lm,
    load_tokenizer,
    offline,
    resolve_model_path,
)

__all__ = [
    "BundledModelsMissing",
    "BundledPair",
    "CacheWriteError",
    "DamagedModelFile",
    "MODEL_REQUIREMENTS",
    "ModelSpec",
    "PAIR",
    "bundled_pair",
    "cache_dir",
    "check_model",
    "check_tokenizer",
    "load_bundled_pair",
    "load_causal_lm",
    "load_tokenizer",
    "offline",
    "resolve_model_path",
]
