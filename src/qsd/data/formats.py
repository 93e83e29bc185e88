"""Readers for the standard on-disk formats: IDX (MNIST family), pickles, SVHN .mat, PTB text
embedded in a Python source file. Each returns numpy arrays or strings; no code is executed."""
from __future__ import annotations

import ast
import gzip
import hashlib
import struct
from pathlib import Path

import numpy as np

from . import safe_pickle
from .errors import DataError

_IDX_DTYPES = {0x08: np.uint8, 0x09: np.int8, 0x0B: ">i2", 0x0C: ">i4", 0x0D: ">f4", 0x0E: ">f8"}


def digest(path: Path, algorithm: str = "sha256") -> str:
    h = hashlib.new(algorithm)
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()


def verify(path: Path, expected: str, algorithm: str, hint: str) -> None:
    """Raise ``DataError`` unless ``path`` exists and has the pinned digest."""
    if not path.is_file():
        raise DataError(f"missing data file {path}; {hint}")
    got = digest(path, algorithm)
    if got != expected:
        raise DataError(f"{algorithm} mismatch for {path}: expected {expected}, got {got}; "
                        f"the file is corrupt or not the pinned release; delete it and {hint}")


def read_idx(path: Path) -> np.ndarray:
    """An IDX file (optionally gzipped), as used by MNIST and Fashion-MNIST."""
    opener = gzip.open if path.suffix == ".gz" else open
    try:
        with opener(path, "rb") as f:
            data = f.read()
        zero, dtype_code, ndim = struct.unpack(">HBB", data[:4])
        if zero != 0 or dtype_code not in _IDX_DTYPES:
            raise ValueError("bad IDX magic number")
        dims = struct.unpack(f">{ndim}I", data[4 : 4 + 4 * ndim])
        arr = np.frombuffer(data, dtype=_IDX_DTYPES[dtype_code], offset=4 + 4 * ndim)
        return arr.reshape(dims)
    except (OSError, EOFError, ValueError, struct.error) as e:
        raise DataError(f"{path} is not a valid IDX file ({e})") from e


def read_pickle(path: Path) -> object:
    """A (gzipped) pickle, through the restricted unpickler."""
    opener = gzip.open if path.suffix == ".gz" else open
    try:
        with opener(path, "rb") as f:
            return safe_pickle.load(f)
    except Exception as e:  # noqa: BLE001 -- any failure means the file is unusable
        raise DataError(f"cannot read pickle {path}: {e}") from e


def read_mat(path: Path) -> dict:
    """A MATLAB .mat file (SVHN's format)."""
    from scipy.io import loadmat

    try:
        return loadmat(path)
    except Exception as e:  # noqa: BLE001
        raise DataError(f"cannot read .mat file {path}: {e}") from e


def read_string_dict(path: Path, variable: str) -> dict[str, str]:
    """String literals assigned as ``variable[key] = "..."`` in a Python file, read with ``ast``
    (the file is parsed, never executed)."""
    try:
        tree = ast.parse(path.read_text(encoding="utf-8"))
    except (OSError, SyntaxError, UnicodeDecodeError) as e:
        raise DataError(f"cannot parse {path}: {e}") from e
    out = {}
    for node in tree.body:
        if (isinstance(node, ast.Assign) and isinstance(node.targets[0], ast.Subscript)
                and isinstance(node.targets[0].value, ast.Name) and node.targets[0].value.id == variable
                and isinstance(node.value, ast.Constant) and isinstance(node.value.value, str)):
            key = node.targets[0].slice
            if isinstance(key, ast.Constant):
                out[key.value] = node.value.value
    return out
