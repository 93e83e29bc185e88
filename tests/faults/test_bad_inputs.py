"""Malformed overrides, configs and data files: each fails before training with a message naming
the problem, and nothing is written to the runs root."""
import shutil

import pytest
from hydra.errors import HydraException
from omegaconf.errors import OmegaConfBaseException

from qsd.data import DataError
from qsd.train import fit
from tests.test_train import config

QSD = ["regulariser=qsd"]
CASES = [  # (overrides, text the error must contain)
    (["regulariser=dropconect"], "regulariser/dropconect"),
    (["model=transformer"], "model/transformer"),
    (["data=imagenet"], "data/imagenet"),
    (["optim=lbfgs"], "optim/lbfgs"),
    (["scale=huge"], "scale/huge"),
    (["experiment=mlp_cifar"], "experiment/mlp_cifar"),
    (["train.epoch=3"], "epoch"),
    (["regulariser.nn=3", *QSD], "nn"),
    (["+regulariser.rate=0.5", *QSD], "regulariser.rate is not a setting"),
    (["rates.hidden=1.0"], "rate must be in [0, 1)"),
    (["rates.hidden=-0.1"], "rate must be in [0, 1)"),
    (["rates.input=1.5", *QSD], "rate must be in [0, 1)"),
    (["rates.hidden=nan"], "rate must be a finite number"),
    (["rates.hidden=abc"], "rate must be a number"),
    (["rates.hidden=null"], "rate must be a number"),
    (["regulariser.n=0", *QSD], "n must be an integer >= 1"),
    (["regulariser.n=-3", *QSD], "n must be an integer >= 1"),
    (["regulariser.n=2.5", *QSD], "n must be an integer >= 1"),
    (["regulariser.n=four", *QSD], "n must be an integer >= 1"),
    (["regulariser.alpha=0", *QSD], "alpha must be > 0 or inf"),
    (["regulariser.alpha=-1", *QSD], "alpha must be > 0 or inf"),
    (["regulariser.alpha=-inf", *QSD], "alpha must be a finite number or inf"),
    (["regulariser.cv=-0.5", *QSD], "cv must be >= 0"),
    (["regulariser.cv=nan", *QSD], "cv must be a finite number"),
    (["regulariser.cv=NaN", *QSD], "cv must be a finite number"),
    (["regulariser.mapping=median", *QSD], "mapping must be one of ['mean', 'failure', 'variance']"),
    (["regulariser.mapping=variance", "regulariser.n=1", "rates.input=0.1", *QSD], "needs r/(1-r) > cv^2/n"),
    (["train.lm_loss=mean"], "train.lm_loss must be one of ['time_sum', 'token_mean']"),
    (["regulariser.granularity=neuron", *QSD], "granularity must be one of ['unit', 'channel', 'synapse']"),
    (["experiment=cnn_mnist", "regulariser.granularity=synapse", *QSD],
     "slot(s) ['conv'] feed other layers: set rates.conv=0"),
    (["+regulariser.backend=gpu", *QSD], "backend must be one of ['kernel', 'torch']"),
    (["train.epochs=-1"], "train.epochs must be an integer >= 1"),
    (["train.epochs=0"], "train.epochs must be an integer >= 1"),
    (["train.epochs=2.5"], "train.epochs must be an integer >= 1"),
    (["train.batch_size=0"], "train.batch_size must be an integer >= 1"),
    (["train.eval_batch_size=ten"], "train.eval_batch_size must be an integer >= 1"),
    (["model.widths=[]"], "model.widths must be a non-empty list"),
    (["model.widths=[0,10]"], "model.widths must be a non-empty list of positive integers"),
    (["optim.lr=-0.1"], "optim.lr must be a positive number"),
    (["optim.lr=nan"], "optim.lr must be a positive number"),
    (["optim.schedule=linear"], "optim.schedule must be one of"),
    (["device=tpu"], "device must be auto, cpu or cuda"),
    (["experiment=cnn_mnist", "~rates.conv"], "rates has no entry for slot 'conv'"),
    (["experiment=wrn_cifar10", "scale=smoke", "model.depth=15"], "WRN depth must be 6k + 4"),
    (["experiment=lstm_ptb", "model.hidden=0"], "model.hidden and model.layers must be >= 1"),
    (["+model.dropout=0.5"], "unexpected keyword argument 'dropout'"),
]


@pytest.mark.parametrize("overrides,message", CASES, ids=[" ".join(c[0]) for c in CASES])
def test_bad_override_fails_fast(tiny_root, tmp_path, overrides, message):
    runs = tmp_path / "runs"
    with pytest.raises((ValueError, HydraException, OmegaConfBaseException, DataError)) as err:
        fit(config(tiny_root, runs, *overrides))
    assert message in str(err.value)
    assert not runs.exists() or not any(runs.rglob("*"))


@pytest.mark.parametrize("damage", ["truncate", "garbage", "delete", "manifest"])
def test_damaged_data_fails_fast_naming_the_file(tiny_root, tmp_path, damage):
    root = tmp_path / "data"
    shutil.copytree(tiny_root, root)
    target = root / "cache" / "mnist" / ("manifest.json" if damage == "manifest" else "train.pt")
    if damage == "truncate":
        target.write_bytes(target.read_bytes()[:100])
    elif damage == "garbage":
        target.write_bytes(b"PK\x03\x04 not a tensor file")
    elif damage == "delete":
        target.unlink()
    else:
        target.write_text("{ not json")
    runs = tmp_path / "runs"
    with pytest.raises(DataError) as err:
        fit(config(root, runs))
    assert "qsd-data fetch mnist" in str(err.value)
    assert damage == "manifest" or "train.pt" in str(err.value)
    assert not runs.exists() or not any(runs.rglob("*"))
