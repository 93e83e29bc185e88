"""The data layer on tiny generated files in the real on-disk formats; nothing touches the network."""
import gzip
import hashlib
import pickle
import struct

import numpy as np
import pytest
import torch
from scipy.io import savemat

from qsd.data import DataError, ImageBatches, LMBatches, TextBatches, fetch, info, load, sources
from qsd.data import formats, safe_pickle
from qsd.data.cli import main as cli
from qsd.data.text import EOS, PAD, UNK, Vocab, batchify, bptt_windows, lm_tokens, pad_batch, tokenize


def write_idx(path, arr: np.ndarray) -> None:
    code = {np.uint8: 0x08}[arr.dtype.type]
    header = struct.pack(">HBB", 0, code, arr.ndim) + struct.pack(f">{arr.ndim}I", *arr.shape)
    with gzip.open(path, "wb") as f:
        f.write(header + arr.tobytes())


def sha(path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


@pytest.fixture
def tiny_idx(tmp_path, monkeypatch):
    """A 'tiny' image data set in IDX format registered as a Spec with pinned digests."""
    raw = tmp_path / "tiny"
    raw.mkdir()
    rng = np.random.default_rng(0)
    for prefix, n in (("train", 30), ("t10k", 10)):
        write_idx(raw / f"{prefix}-images-idx3-ubyte.gz", rng.integers(0, 256, (n, 28, 28), dtype=np.uint8))
        write_idx(raw / f"{prefix}-labels-idx1-ubyte.gz", (np.arange(n) % 10).astype(np.uint8))

    def convert(root):
        (x, y), (xt, yt) = sources._idx_pair(root / "tiny", "train"), sources._idx_pair(root / "tiny", "t10k")
        return sources._holdout(x, y, 5, (xt, yt)), {"classes": 10}

    spec = sources.Spec("tiny", "image", "generated", {f"tiny/{f.name}": ("sha256", sha(f)) for f in raw.iterdir()}, convert)
    monkeypatch.setitem(sources.SPECS, "tiny", spec)
    return tmp_path


def test_cache_round_trip(tiny_idx):
    fetch("tiny", tiny_idx)
    tr, va, te = (load("tiny", s, tiny_idx) for s in ("train", "valid", "test"))
    assert tr["x"].shape == (25, 1, 28, 28) and tr["x"].dtype == torch.uint8
    assert va["x"].shape == (5, 1, 28, 28) and te["y"].tolist() == list(range(10))
    raw = formats.read_idx(tiny_idx / "tiny/train-images-idx3-ubyte.gz")
    assert torch.equal(tr["x"][:, 0], torch.from_numpy(raw[:25].copy()))
    report = info("tiny", tiny_idx)
    assert report["splits"]["test"] == {"size": 10, "sha256": "ok", "class_counts": [1] * 10}
    assert report["raw"]["tiny/train-images-idx3-ubyte.gz"] == "sha256 ok"


def test_fetch_is_a_no_op_when_ready(tiny_idx):
    cache = fetch("tiny", tiny_idx)
    before = {p.name: p.stat().st_mtime_ns for p in cache.iterdir()}
    fetch("tiny", tiny_idx)
    assert before == {p.name: p.stat().st_mtime_ns for p in cache.iterdir()}


def test_raw_checksum_mismatch_is_refused(tiny_idx):
    f = tiny_idx / "tiny/t10k-labels-idx1-ubyte.gz"
    f.write_bytes(f.read_bytes()[:-3])
    with pytest.raises(DataError, match=r"sha256 mismatch for .*t10k-labels-idx1-ubyte.gz"):
        fetch("tiny", tiny_idx)
    assert not (tiny_idx / "cache/tiny/manifest.json").exists()


def test_corrupt_cache_names_the_file_and_the_fix(tiny_idx):
    cache = fetch("tiny", tiny_idx)
    (cache / "train.pt").write_bytes(b"junk")
    with pytest.raises(DataError) as err:
        load("tiny", "train", tiny_idx)
    assert "train.pt" in str(err.value) and "qsd-data fetch tiny" in str(err.value)


def test_missing_data_names_the_fetch_command(tmp_path, capsys):
    with pytest.raises(DataError, match=r"qsd-data fetch mnist --root"):
        load("mnist", "train", tmp_path)
    assert cli(["info", "mnist", "--root", str(tmp_path)]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "qsd-data fetch mnist" in err and "Traceback" not in err


def test_user_supplied_missing_file_says_where_to_put_it(tmp_path, capsys):
    assert cli(["fetch", "cifar10", "--root", str(tmp_path)]) == 2
    assert "missing data file" in capsys.readouterr().err


def test_unknown_split_and_name(tiny_idx):
    fetch("tiny", tiny_idx)
    with pytest.raises(DataError, match="splits: \\['test', 'train', 'valid'\\]"):
        load("tiny", "extra", tiny_idx)
    with pytest.raises(DataError, match="choose one of"):
        load("mnits", "train", tiny_idx)


def test_idx_reader_rejects_garbage(tmp_path):
    p = tmp_path / "bad-idx.gz"
    with gzip.open(p, "wb") as f:
        f.write(b"\x01\x02\x03\x04garbage")
    with pytest.raises(DataError, match="not a valid IDX"):
        formats.read_idx(p)


def test_cifar_pickles_through_the_safe_unpickler(tmp_path):
    d = tmp_path / "cifar-10-batches-py"
    d.mkdir()
    for name, n in (("data_batch_1", 4), ("test_batch", 2)):
        batch = {b"batch_label": b"x", "data": (np.arange(n * 3072).reshape(n, 3072) % 251).astype(np.uint8),
                 "labels": list(range(n))}
        (d / name).write_bytes(pickle.dumps(batch, protocol=2))
    x, y = sources._cifar_batches(d, ["data_batch_1"], "labels")
    assert x.shape == (4, 3, 32, 32) and y.tolist() == [0, 1, 2, 3]
    assert x[1, 0, 0, 0].item() == 3072 % 251


class Exploit:
    def __reduce__(self):
        import os
        return (os.system, ("touch /tmp/qsd-pwned",))


def test_malicious_pickle_is_refused(tmp_path):
    p = tmp_path / "evil.pkl"
    p.write_bytes(pickle.dumps({"data": Exploit()}))
    with pytest.raises(DataError, match="refused to load posix.system"):
        formats.read_pickle(p)
    with pytest.raises(pickle.UnpicklingError):
        safe_pickle.load(open(p, "rb"))


def test_svhn_mat_reader(tmp_path, monkeypatch):
    d = tmp_path / "svhn"
    d.mkdir()
    X = np.random.default_rng(0).integers(0, 256, (32, 32, 3, 5), dtype=np.uint8)
    savemat(d / "train_32x32.mat", {"X": X, "y": np.array([[10], [1], [2], [3], [4]], dtype=np.uint8)})
    m = formats.read_mat(d / "train_32x32.mat")
    assert m["X"].shape == (32, 32, 3, 5)
    (d / "test_32x32.mat").write_bytes(b"not a mat file")
    with pytest.raises(DataError, match="cannot read .mat file"):
        formats.read_mat(d / "test_32x32.mat")


def test_ptb_strings_read_without_executing(tmp_path):
    p = tmp_path / "treebank.py"
    p.write_text('import os\nos.system("touch /tmp/qsd-pwned")\npenn = {}\npenn["train"] = """ a b \n c \n"""\n'
                 'penn["valid"] = " a \\n"\n')
    assert formats.read_string_dict(p, "penn") == {"train": " a b \n c \n", "valid": " a \n"}


def test_reviews_csv_partition_is_seeded_and_stratification_free(tmp_path, monkeypatch):
    d = tmp_path / "reviews"
    d.mkdir()
    rows = ["text,label,source"] + [f'"Review {i}, <br /><br />Great film!",{i % 2},imdb' for i in range(40)]
    rows += ['"a sentence",1,rotten_tomatoes']
    (d / sources.REVIEWS_CSV).write_text("\n".join(rows) + "\n")
    splits, meta = sources._reviews("imdb", 40)(d)
    assert [len(splits[s]["y"]) for s in ("train", "valid", "test")] == [28, 4, 8]
    assert meta["vocab"][:2] == [PAD, UNK] and "<br" not in meta["vocab"]
    again, _ = sources._reviews("imdb", 40)(d)
    assert torch.equal(again["test"]["y"], splits["test"]["y"])
    with pytest.raises(DataError, match="verification failed"):
        sources._reviews("imdb", 41)(d)


def test_tokenizer_and_vocab_edge_cases():
    assert tokenize("It's GREAT!<br />Really.") == ["it's", "great", "!", "really", "."]
    assert tokenize("") == []
    assert lm_tokens(" a b \n\n c \n") == ["a", "b", EOS, "c", EOS]
    v = Vocab.build([["b", "a", "b"], ["c"]], [PAD, UNK], max_size=3)
    assert v.itos == [PAD, UNK, "b"] and v.encode(["b", "zzz"]) == [2, 1]
    with pytest.raises(KeyError):
        Vocab(["a", EOS]).encode(["b"])
    with pytest.raises(ValueError):
        Vocab(["a", "a"])


def test_batchify_and_bptt_shapes():
    data = batchify(torch.arange(103), 4)
    assert data.shape == (25, 4) and data[:, 1].tolist() == list(range(25, 50))
    windows = list(bptt_windows(data, 10))
    assert [w[0].shape[0] for w in windows] == [10, 10, 4]
    assert all(torch.equal(x[1:], y[:-1]) for x, y in windows)
    assert len(LMBatches(torch.arange(103), 4, 10, "cpu")) == 3
    with pytest.raises(ValueError, match="too few"):
        batchify(torch.arange(3), 4)


def test_pad_batch_truncates_and_pads():
    x, lengths = pad_batch([torch.tensor([5, 6, 7]), torch.tensor([8])], max_len=2)
    assert x.tolist() == [[5, 6], [8, 0]] and lengths.tolist() == [2, 1]


def test_image_iterator_covers_every_example_once_and_is_seeded():
    x = torch.arange(50, dtype=torch.uint8).view(50, 1, 1, 1).expand(50, 1, 4, 4).contiguous()
    y = torch.arange(50)
    it = ImageBatches(x, y, 16, "cpu", torch.zeros(1), torch.ones(1) / 255, seed=3)
    epoch1 = torch.cat([b[1] for b in it])
    assert sorted(epoch1.tolist()) == list(range(50)) and len(it) == 4
    epoch2 = torch.cat([b[1] for b in it])
    assert not torch.equal(epoch1, epoch2)
    same = ImageBatches(x, y, 16, "cpu", torch.zeros(1), torch.ones(1) / 255, seed=3)
    assert torch.equal(torch.cat([b[1] for b in same]), epoch1)
    for xb, yb in same:  # images stay aligned with labels
        assert torch.equal(xb[:, 0, 0, 0], yb.float())


def test_augmentation_crop_and_flip_keep_content():
    x = (torch.arange(2 * 3 * 8 * 8) % 250 + 1).to(torch.uint8).view(2, 3, 8, 8)
    it = ImageBatches(x, torch.zeros(2, dtype=torch.long), 2, "cpu", torch.zeros(3), torch.ones(3) / 255,
                      crop_pad=2, flip=True, seed=0)
    for xb, _ in it:
        assert xb.shape == (2, 3, 8, 8)
        assert set(xb[xb != 0].long().tolist()) <= set(x.flatten().long().tolist())  # no invented pixels


def test_text_iterator_buckets_and_covers_everything():
    lengths = torch.randint(1, 30, (101,), generator=torch.Generator().manual_seed(0))
    ids = torch.arange(int(lengths.sum())) % 97 + 2
    offsets = torch.cat([torch.zeros(1, dtype=torch.long), lengths.cumsum(0)])
    y = torch.arange(101) % 2
    it = TextBatches(ids, offsets, y, 8, max_len=20, device="cpu", seed=1)
    seen = 0
    for (xb, lb), yb in it:
        assert xb.shape[0] == lb.shape[0] == yb.shape[0] and xb.shape[1] == lb.max() <= 20
        seen += len(yb)
    assert seen == 101 and len(it) == 13


def test_crop_pads_with_black_not_the_mean():
    """torchvision pads raw pixels with 0: after standardising, a padded pixel is -mean/std."""
    x = torch.full((64, 1, 6, 6), 200, dtype=torch.uint8)
    mean, std = torch.tensor([0.5]), torch.tensor([0.25])
    it = ImageBatches(x, torch.zeros(64, dtype=torch.long), 64, "cpu", mean, std, crop_pad=2, seed=0)
    xb = next(iter(it))[0]
    black, pixel = -0.5 / 0.25, (200 / 255 - 0.5) / 0.25
    assert torch.unique(xb).tolist() == pytest.approx([black, pixel])  # some of 64 crops reach the padding
