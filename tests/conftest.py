import functools
import os

import pytest
import torch

os.environ.setdefault("WANDB_MODE", "disabled")

IMAGE_SETS = {"mnist": (1, 28, 10), "fashion_mnist": (1, 28, 10), "cifar10": (3, 32, 10), "cifar100": (3, 32, 100),
              "svhn": (3, 32, 10)}


def write_tiny_caches(root) -> None:
    """Tiny generated data in the cache format for every data set (for config and trainer tests)."""
    from qsd.data import store
    from qsd.data.text import EOS, PAD, UNK

    g = torch.Generator().manual_seed(0)
    for name, (c, s, k) in IMAGE_SETS.items():
        splits = {sp: {"x": torch.randint(0, 256, (n, c, s, s), generator=g, dtype=torch.uint8),
                       "y": torch.arange(n) % k} for sp, n in (("train", 200), ("valid", 60), ("test", 60))}
        store.write_cache(name, root, splits, {"classes": k}, {"generated": "test data"})
    vocab = [EOS] + [f"w{i}" for i in range(49)]
    for name in ("ptb", "wikitext2"):
        splits = {sp: {"ids": torch.randint(0, 50, (n,), generator=g)} for sp, n in
                  (("train", 3000), ("valid", 600), ("test", 600))}
        store.write_cache(name, root, splits, {"vocab": vocab}, {"generated": "test data"})
    tvocab = [PAD, UNK] + [f"w{i}" for i in range(48)]
    for name in ("imdb", "rt"):
        splits = {}
        for sp, n in (("train", 80), ("valid", 20), ("test", 20)):
            lengths = torch.randint(1, 30, (n,), generator=g)
            splits[sp] = {"ids": torch.randint(2, 50, (int(lengths.sum()),), generator=g),
                          "offsets": torch.cat([torch.zeros(1, dtype=torch.long), lengths.cumsum(0)]),
                          "y": torch.arange(n) % 2}
        store.write_cache(name, root, splits, {"classes": 2, "vocab": tvocab}, {"generated": "test data"})


@pytest.fixture(scope="session")
def tiny_root(tmp_path_factory):
    root = tmp_path_factory.mktemp("tiny_data")
    write_tiny_caches(root)
    return root


@pytest.fixture(autouse=True, scope="session")
def plan_each_scale_once():
    """``suite.plan`` reads only configs/ and experiments/, which no test changes, and takes 5-20 s on
    2 cores: each test process plans a scale once, and every caller gets its own copy of the list."""
    from qsd import suite

    plan, real = functools.cache(suite.plan), suite.plan
    suite.plan = lambda scale, replicate=False: list(plan(scale, replicate))
    yield
    suite.plan = real
