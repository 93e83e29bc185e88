"""A restricted unpickler for the pickled data sets (the classic MNIST file, CIFAR batches).

Only numpy arrays and plain containers can be rebuilt; any other global (``os.system``,
``builtins.eval``, ...) raises ``pickle.UnpicklingError`` before anything runs.
"""
from __future__ import annotations

import codecs
import pickle
from typing import IO, Any

import numpy as np

_RECONSTRUCT = np.ndarray.__reduce__(np.zeros(1))[0]  # numpy's own array reconstructor
_ALLOWED = {
    ("numpy.core.multiarray", "_reconstruct"): _RECONSTRUCT,
    ("numpy._core.multiarray", "_reconstruct"): _RECONSTRUCT,
    ("numpy", "ndarray"): np.ndarray,
    ("numpy", "dtype"): np.dtype,
    ("_codecs", "encode"): codecs.encode,  # how Python 3 pickles bytes at protocol 2
}


class SafeUnpickler(pickle.Unpickler):
    """Unpickler that admits only numpy arrays/dtypes and builtin containers."""

    def find_class(self, module: str, name: str) -> Any:
        try:
            return _ALLOWED[(module, name)]
        except KeyError:
            raise pickle.UnpicklingError(
                f"refused to load {module}.{name}: only numpy arrays and plain containers are allowed"
            ) from None


def load(f: IO[bytes]) -> Any:
    """Unpickle ``f`` (Python 2 pickles too) through ``SafeUnpickler``."""
    return SafeUnpickler(f, encoding="latin1").load()
