"""The verified cache: ``fetch`` converts raw files into ``<root>/cache/<name>/<split>.pt`` (written
atomically, manifest last), ``load`` reads a split back after checking its sha256, ``info`` reports."""
from __future__ import annotations

import io
import json
import os
from pathlib import Path

import torch

from ..io import atomic_write, write_json
from ..paths import checkout
from . import formats
from .errors import DataError
from .sources import SPECS, Spec

FORMAT_VERSION = 1


def data_root(root: str | os.PathLike | None = None) -> Path:
    """``root`` if given, else ``$QSD_DATA_ROOT``, else the checkout's ``data/``."""
    return Path(root if root is not None else os.environ.get("QSD_DATA_ROOT", checkout("data"))).expanduser().resolve()


def spec(name: str) -> Spec:
    if name not in SPECS:
        raise DataError(f"unknown data set {name!r}; choose one of {sorted(SPECS)}")
    return SPECS[name]


def _cache_dir(name: str, root: Path) -> Path:
    return root / "cache" / name


def _manifest(name: str, root: Path) -> dict | None:
    path = _cache_dir(name, root) / "manifest.json"
    try:
        m = json.loads(path.read_text())
    except (OSError, ValueError):
        return None
    return m if m.get("format") == FORMAT_VERSION else None


def _hint(name: str, root: Path, force: bool = False) -> str:
    """How to get data set ``name``: the fetch command, or (user-supplied sets) where to put its files."""
    s, fetch = spec(name), f"`qsd-data fetch {name} --root {root}{' --force' if force else ''}`"
    if s.obtain:
        return f"run {fetch} (or `make data`)"
    return (f"it cannot be downloaded here: place the {s.source.split(': ', 1)[-1]} files under {root}/, "
            f"then run {fetch} (see docs/usage.md: data)")


def _prepared(name: str, root: Path) -> dict:
    """The manifest of a prepared data set; a ``DataError`` saying how to prepare it otherwise."""
    m = _manifest(name, root)
    if m is None:
        raise DataError(f"data set {name!r} is not prepared (no valid {_cache_dir(name, root) / 'manifest.json'}); "
                        f"{_hint(name, root)}")
    return m


def missing(name: str, root: str | os.PathLike | None = None) -> str | None:
    """None if ``name`` is prepared (its manifest is in place; ``load`` checks each file's hash), else
    what to do: the fetch command, or (user-supplied sets) where to put the files first."""
    root = data_root(root)
    return None if _manifest(name, root) is not None else _hint(name, root)


def _verify_raw(s: Spec, root: Path) -> dict[str, str]:
    status = {}
    for rel, (algo, expected) in s.raw.items():
        path = root / rel
        hint = _hint(s.name, root)
        if not algo:
            if not path.is_file():
                raise DataError(f"missing data file {path}; {hint}")
            status[rel] = "unpinned sha256 " + formats.digest(path)
        else:
            formats.verify(path, expected, algo, hint)
            status[rel] = f"{algo} ok"
    return status


def is_ready(name: str, root: str | os.PathLike | None = None) -> bool:
    """Whether the cache for ``name`` is complete and its files match the manifest."""
    root = data_root(root)
    m = _manifest(name, root)
    if m is None:
        return False
    cache = _cache_dir(name, root)
    return all((cache / f).is_file() and formats.digest(cache / f) == h for f, h in m["files"].items())


def fetch(name: str, root: str | os.PathLike | None = None, force: bool = False) -> Path:
    """Obtain (if missing), verify and convert ``name``; a no-op when its cache is already valid."""
    root, s = data_root(root), spec(name)
    if not force and is_ready(name, root):
        return _cache_dir(name, root)
    if s.obtain and any(not (root / rel).is_file() or not _raw_ok(root / rel, a, h) for rel, (a, h) in s.raw.items()):
        s.obtain(root)
    raw_status = _verify_raw(s, root)
    splits, meta = s.convert(root)
    return write_cache(name, root, splits, meta, raw_status)


def write_cache(name: str, root: Path, splits: dict[str, dict[str, torch.Tensor]], meta: dict,
                raw_status: dict[str, str]) -> Path:
    """Write each split atomically, then the manifest (last: its presence means the cache is whole)."""
    s, cache = spec(name), _cache_dir(name, root)
    files = {}
    for split, tensors in splits.items():
        buf = io.BytesIO()
        torch.save(tensors, buf)
        atomic_write(cache / f"{split}.pt", lambda f: f.write(buf.getvalue()))
        files[f"{split}.pt"] = formats.digest(cache / f"{split}.pt")
    write_json(cache / "manifest.json", {
        "format": FORMAT_VERSION, "name": name, "kind": s.kind, "source": s.source, "note": s.note,
        "raw": raw_status, "files": files, "meta": meta,
        "sizes": {sp: _size(t) for sp, t in splits.items()},
    })
    return cache


def _raw_ok(path: Path, algo: str, expected: str) -> bool:
    return not algo or formats.digest(path, algo) == expected


def _size(t: dict[str, torch.Tensor]) -> int:
    return len(t["y"]) if "y" in t else t["ids"].numel()


def meta(name: str, root: str | os.PathLike | None = None) -> dict:
    """The manifest's ``meta`` (classes, vocab) of a prepared data set."""
    return _prepared(name, data_root(root))["meta"]


def load(name: str, split: str, root: str | os.PathLike | None = None) -> dict[str, torch.Tensor]:
    """Tensors of one split: images ``x`` (uint8 N x C x H x W) + ``y``; LM ``ids``; text ``ids``,
    ``offsets``, ``y``. Raises ``DataError`` naming the file and the fetch command if anything is off."""
    root = data_root(root)
    m = _prepared(name, root)
    fname = f"{split}.pt"
    if fname not in m["files"]:
        raise DataError(f"data set {name!r} has no split {split!r}; splits: {sorted(f[:-3] for f in m['files'])}")
    path = _cache_dir(name, root) / fname
    if not path.is_file():
        raise DataError(f"missing data file {path}; {_hint(name, root, force=True)}")
    if formats.digest(path) != m["files"][fname]:
        raise DataError(f"sha256 mismatch for {path} (corrupt or truncated); {_hint(name, root, force=True)}")
    return torch.load(path, weights_only=True)


def info(name: str, root: str | os.PathLike | None = None) -> dict:
    """A JSON-able report: splits and sizes, class or token counts, vocab size, source, checksums."""
    root = data_root(root)
    s, m = spec(name), _prepared(name, root)
    report = {"name": name, "kind": s.kind, "source": m["source"], "note": m["note"], "root": str(root),
              "raw": m["raw"], "splits": {}}
    for fname in m["files"]:
        split = fname[:-3]
        t = load(name, split, root)
        entry: dict = {"size": _size(t), "sha256": "ok"}
        if "y" in t:
            entry["class_counts"] = torch.bincount(t["y"]).tolist()
        if "ids" in t:
            entry["tokens"] = t["ids"].numel()
        report["splits"][split] = entry
    if "vocab" in m["meta"]:
        report["vocab_size"] = len(m["meta"]["vocab"])
    return report
