"""The trainer on tiny generated data: every experiment composes and runs; resume is exact;
divergence is recorded; bad configs fail before training with a useful message."""
import inspect
import json
import subprocess
import sys
from pathlib import Path

import pytest
import torch
from hydra import compose, initialize_config_dir
from omegaconf import OmegaConf

from qsd import runstore
from qsd.train import CONFIG_DIR, fit

EXPERIMENTS = sorted(p.stem for p in Path(CONFIG_DIR, "experiment").glob("*.yaml"))
SMALL = ["scale=smoke", "data.limit_train=null", "data.limit_eval=null", "train.max_steps=2", "train.epochs=1"]


def config(tiny_root, runs, *overrides):
    with initialize_config_dir(config_dir=CONFIG_DIR, version_base="1.3"):
        return compose("train", overrides=[f"paths.data={tiny_root}", f"paths.runs={runs}", "device=cpu",
                                            *overrides])


@pytest.mark.parametrize("experiment", EXPERIMENTS)
@pytest.mark.parametrize("regulariser", ["dropout", "qsd"])
def test_every_experiment_runs_a_smoke_step(tiny_root, tmp_path, experiment, regulariser):
    cfg = config(tiny_root, tmp_path, f"experiment={experiment}", f"regulariser={regulariser}", *SMALL)
    summary = fit(cfg)
    assert summary["status"] == "completed" and summary["scale"] == "smoke"
    path = runstore.run_dir(cfg)
    assert {"config.yaml", "metrics.jsonl", "summary.json", "ckpt-last.pt", "model.pt"} <= {p.name for p in path.iterdir()}
    assert json.loads((path / "metrics.jsonl").read_text().splitlines()[0])["epoch"] == 1


@pytest.mark.parametrize("overrides", [["experiment=mlp_mnist"], ["experiment=cnn_mnist", "rates.conv=0"]])
def test_synapse_granularity_trains_where_every_regularised_slot_feeds_a_linear_layer(tiny_root, tmp_path, overrides):
    cfg = config(tiny_root, tmp_path, *overrides, "regulariser=qsd", "regulariser.granularity=synapse", *SMALL)
    assert fit(cfg)["status"] == "completed"
    assert "granularity: synapse" in (runstore.run_dir(cfg) / "config.yaml").read_text()


def test_experiments_put_regulariser_where_the_recipe_says(tiny_root, tmp_path):
    from qsd.tasks import build_task
    from qsd.train import build_model_from

    cfg = config(tiny_root, tmp_path, "experiment=mlp_mnist", "regulariser=qsd", "model.widths=[16,16]")
    task = build_task(cfg.data, cfg.train, 0, torch.device("cpu"), str(tiny_root))
    model = build_model_from(cfg, task.dims)
    regs = [m for m in model.modules() if type(m).__name__ == "QSD"]
    assert [r.rate for r in regs] == [0.2, 0.5, 0.5]


def interrupt_after_checkpoint(cfg, n: int, monkeypatch) -> None:
    """Run ``fit(cfg)`` until its n-th checkpoint is written, then interrupt it (a simulated kill)."""
    real_save = runstore.save_checkpoint
    calls = {"n": 0}

    def save_then_die(path, state):
        real_save(path, state)
        calls["n"] += 1
        if calls["n"] == n:
            raise KeyboardInterrupt(f"simulated kill after checkpoint {n}")

    monkeypatch.setattr(runstore, "save_checkpoint", save_then_die)
    with pytest.raises(KeyboardInterrupt):
        fit(cfg)
    monkeypatch.setattr(runstore, "save_checkpoint", real_save)


def test_completed_run_is_not_redone(tiny_root, tmp_path):
    cfg = config(tiny_root, tmp_path, *SMALL)
    first = fit(cfg)
    assert fit(cfg) == first


def test_resume_after_a_kill_gives_identical_metrics(tiny_root, tmp_path, monkeypatch):
    overrides = ["experiment=mlp_mnist", "regulariser=qsd", "model.widths=[32,32]", "train.epochs=3",
                 "train.batch_size=50"]
    cfg_a = config(tiny_root, tmp_path / "a", *overrides)
    whole = fit(cfg_a)

    cfg_b = config(tiny_root, tmp_path / "b", *overrides)
    interrupt_after_checkpoint(cfg_b, 2, monkeypatch)
    resumed = fit(cfg_b)
    strip = lambda s: {k: v for k, v in s.items() if k not in ("wall_s",)}
    assert strip(resumed) == strip(whole)
    rows = lambda cfg: [json.loads(line) for line in (runstore.run_dir(cfg) / "metrics.jsonl").read_text().splitlines()]
    a, b = rows(cfg_a), rows(cfg_b)
    drop_wall = lambda rows: [{k: v for k, v in r.items() if k != "wall_s"} for r in rows]
    assert drop_wall(a) == drop_wall(b) and len(b) == 3


def test_a_longer_twin_trains_on_from_the_shorter_run_as_it_would_from_scratch(tiny_root, tmp_path, monkeypatch):
    overrides = ["experiment=mlp_mnist", "regulariser=qsd", "model.widths=[32,32]", "train.batch_size=50",
                 "optim.schedule=step", "optim.milestones=[1]"]
    scratch = config(tiny_root, tmp_path / "a", *overrides, "train.epochs=3")
    whole = fit(scratch)
    shorter = config(tiny_root, tmp_path / "b", *overrides, "train.epochs=2")
    fit(shorter)
    fit(config(tiny_root, tmp_path / "b", *overrides, "train.epochs=1", "seed=1"))  # another seed's: no twin
    longer = config(tiny_root, tmp_path / "b", *overrides, "train.epochs=3")
    interrupt_after_checkpoint(longer, 1, monkeypatch)  # killed after its own epoch 3: resumes as it began
    continued = fit(longer)
    assert continued["continued_from"]["run"] == runstore.run_dir(shorter).name
    assert continued["continued_from"]["epochs"] == 2 and runstore.epochs_trained(continued) == 1  # wall_s times 1
    strip = lambda s: {k: v for k, v in s.items() if k not in ("wall_s", "continued_from")}
    assert strip(continued) == strip(whole)
    rows = lambda cfg: [{k: v for k, v in json.loads(line).items() if k != "wall_s"}
                        for line in (runstore.run_dir(cfg) / "metrics.jsonl").read_text().splitlines()]
    assert rows(longer) == rows(scratch) and len(rows(longer)) == 3
    chained = fit(config(tiny_root, tmp_path / "b", *overrides, "train.epochs=4"))  # on from the continued one
    assert chained["continued_from"]["continued_from"]["run"] == runstore.run_dir(shorter).name


def test_a_cosine_schedule_gives_no_head_start(tiny_root, tmp_path):
    overrides = ["experiment=mlp_mnist", "model.widths=[16]", "optim.schedule=cosine", *SMALL[:-1]]
    fit(config(tiny_root, tmp_path, *overrides, "train.epochs=1"))  # its checkpoint holds the rate of a 1-epoch run's
    assert "continued_from" not in fit(config(tiny_root, tmp_path, *overrides, "train.epochs=2"))  # epoch 2: 0, not 0.5


def test_same_seed_same_numbers_and_same_data_order(tiny_root, tmp_path):
    a = fit(config(tiny_root, tmp_path / "a", *SMALL, "regulariser=qsd"))
    b = fit(config(tiny_root, tmp_path / "b", *SMALL, "regulariser=qsd"))
    assert a["test_loss"] == b["test_loss"]


def test_nan_loss_marks_the_run_diverged(tiny_root, tmp_path):
    cfg = config(tiny_root, tmp_path, *SMALL, "train.max_steps=null", "optim.lr=1e30", "train.epochs=3")
    summary = fit(cfg)
    assert summary["status"] == "diverged"
    assert json.loads((runstore.run_dir(cfg) / "summary.json").read_text())["status"] == "diverged"


BAD = [
    (["regulariser.n=0"], "n must be an integer >= 1"),
    (["rates.hidden=1.0"], "rate must be in [0, 1)"),
    (["regulariser=qsd", "regulariser.alpha=0"], "alpha must be > 0 or inf"),
    (["regulariser=qsd", "regulariser.cv=-1"], "cv must be >= 0"),
    (["train.epochs=-1"], "train.epochs must be an integer >= 1"),
    (["model.widths=[]"], "model.widths must be a non-empty list"),
    (["optim.schedule=linear"], "optim.schedule must be one of"),
    (["experiment=cnn_mnist", "~rates.conv"], "rates has no entry for slot 'conv'"),
    (["seed=abc"], "seed must be an integer >= 0, got 'abc'"),
    (["+rates.conv=0.3"], "model 'mlp' has rate slots ['input', 'hidden']; rates.conv would change nothing"),
    (["experiment=cnn_mnist", "+rates.input=0.2"], "rates.input would change nothing"),
    (["train.progress=yes"], "train.progress must be one of ['auto', 'on', 'off'], got 'yes'"),
    (["train.threads=0"], "train.threads must be an integer >= 1"),
    (["experiment=wrn_cifar10", "scale=cpu"], "experiment 'wrn_cifar10' has no cpu sizing"),
    (["regulariser=qsd", "regulariser.sampler=1"], "sampler must be 2, the only one this version implements"),
    (["train.cuda_graphs=true"], "train.cuda_graphs=true needs a CUDA device, but device=cpu"),
    (["train.cuda_graphs=yes"], "train.cuda_graphs must be auto, true or false"),
    (["experiment=lstm_imdb", "train.cuda_graphs=true", "device=cuda"], "train.cuda_graphs supports image "
     "classification and language models (batches of one shape); data 'imdb' is 'text'"),
]


@pytest.mark.parametrize("overrides,message", BAD)
def test_bad_configs_fail_before_training(tiny_root, tmp_path, overrides, message):
    extra = ["regulariser=qsd"] if overrides[0].startswith("regulariser.") else []
    cfg = config(tiny_root, tmp_path, *extra, *overrides)
    with pytest.raises(ValueError) as err:
        fit(cfg)
    assert message in str(err.value)
    assert not any(tmp_path.rglob("summary.json"))


def test_missing_data_names_the_fetch_command(tmp_path):
    cfg = config(tmp_path / "empty", tmp_path / "runs")
    with pytest.raises(Exception) as err:
        fit(cfg)
    assert "qsd-data fetch mnist" in str(err.value)
    cfg = config(tmp_path / "empty", tmp_path / "runs", "experiment=wrn_cifar10", "scale=paper")
    with pytest.raises(Exception) as err:  # CIFAR cannot be fetched here: say where its files go
        fit(cfg)
    assert "place the cifar-10-batches-py/" in str(err.value) and str(tmp_path / "empty") in str(err.value)


def test_every_model_declares_the_rate_slots_it_uses():
    from qsd.models import MODELS

    dims = {"in_features": 4, "in_channels": 3, "image_size": 32, "classes": 2, "vocab_size": 10}
    for experiment in EXPERIMENTS:
        with initialize_config_dir(config_dir=CONFIG_DIR, version_base="1.3"):
            cfg = compose("train", overrides=[f"experiment={experiment}", "scale=smoke"])
        model, asked = MODELS[cfg.model.name], []
        params = {k: v for k, v in OmegaConf.to_container(cfg.model).items() if k != "name"}
        params.update({k: v for k, v in dims.items() if k in inspect.signature(model.__init__).parameters})
        model(make_reg=lambda slot, **kw: asked.append(slot) or torch.nn.Identity(), **params)
        assert set(asked) == set(model.SLOTS) == set(cfg.rates), experiment
        # the slots it says feed a Linear layer are masked there at "synapse" granularity, and no others
        from qsd.models.synapse import SynapticLinear
        from qsd.regularisers import build

        def tagged(slot, **kw):
            reg = build("dropout", granularity="synapse")
            reg.slot = slot
            return reg

        built = model(make_reg=tagged, **params)
        inside = {id(m.reg) for m in built.modules() if isinstance(m, SynapticLinear)}
        linear = set(getattr(model, "LINEAR_SLOTS", ()))
        assert {r.slot for r in built.modules() if id(r) in inside} == linear, experiment


def test_sentiment_lstm_reads_each_review_at_its_last_token_as_packing_does():
    from torch.nn.utils.rnn import pack_padded_sequence

    from qsd.models import LSTMClassifier

    torch.manual_seed(0)
    lengths = torch.tensor([1, 7, 12, 3, 12, 5])
    x = torch.randint(1, 20, (len(lengths), 12)) * (torch.arange(12) < lengths[:, None])  # right-padded with 0
    for bidirectional in (False, True):
        model = LSTMClassifier(lambda slot, **kw: torch.nn.Identity(), vocab_size=20, classes=2, embedding=5, hidden=4,
                               bidirectional=bidirectional)
        packed = pack_padded_sequence(model.embed(x), lengths, batch_first=True, enforce_sorted=False)
        reference = model.head(torch.cat(list(model.lstm(packed)[1][0]), dim=1))
        out = model((x, lengths))
        grads = torch.autograd.grad(out.square().sum(), list(model.parameters()))
        reference_grads = torch.autograd.grad(reference.square().sum(), list(model.parameters()))
        torch.testing.assert_close(out, reference)
        for g, r in zip(grads, reference_grads):
            torch.testing.assert_close(g, r)


def test_threads_are_set_and_recorded_and_not_in_the_hash(tiny_root, tmp_path):
    one = config(tiny_root, tmp_path, *SMALL)
    two = config(tiny_root, tmp_path, *SMALL, "train.threads=2")
    assert runstore.run_dir(one) == runstore.run_dir(two)
    assert fit(two)["threads"] == 2 and torch.get_num_threads() == 2


@pytest.mark.parametrize("override,message", [
    ("regulariser=dropconect", "Could not find 'regulariser/dropconect'"),
    ("train.epoch=3", "Key 'epoch' is not in struct"),
    ("regulariser.n=0", "Key 'n' is not in struct"),  # dropout has no n
])
def test_cli_rejects_typos(override, message, tmp_path):
    run = subprocess.run([sys.executable, "-m", "qsd.train", override, f"paths.runs={tmp_path}"],
                         capture_output=True, text=True)
    assert run.returncode != 0 and message in run.stderr + run.stdout


def test_amp_bf16_runs_on_cpu(tiny_root, tmp_path):
    assert fit(config(tiny_root, tmp_path, *SMALL, "train.amp=true", "regulariser=qsd"))["status"] == "completed"


def test_wandb_logger_offline_and_broken(tiny_root, tmp_path, monkeypatch, caplog):
    monkeypatch.setenv("WANDB_MODE", "disabled")
    assert fit(config(tiny_root, tmp_path / "ok", *SMALL, "logger=wandb"))["status"] == "completed"
    import wandb

    def broken(*a, **k):
        raise ConnectionError("wandb.example unreachable")

    monkeypatch.setattr(wandb, "init", broken)
    assert fit(config(tiny_root, tmp_path / "broken", *SMALL, "logger=wandb"))["status"] == "completed"
    assert sum("wandb unavailable" in r.message for r in caplog.records) == 1


@pytest.mark.parametrize("experiment", EXPERIMENTS)
def test_paper_scale_composes_the_full_protocol_and_starts(tiny_root, tmp_path, experiment):
    cfg = config(tiny_root, tmp_path, f"experiment={experiment}", "scale=paper")
    full = {"mlp_mnist": ("model.widths", [1024, 1024]), "lstm_ptb": ("model.hidden", 650),
            "wrn_cifar10": ("train.epochs", 200), "cnn_fashion": ("model.channels", [32, 64, 128])}
    if experiment in full:
        key, value = full[experiment]
        section, name = key.split(".")
        assert list(cfg[section][name]) == value if isinstance(value, list) else cfg[section][name] == value
    assert cfg.data.limit_train is None
    cfg = config(tiny_root, tmp_path, f"experiment={experiment}", "scale=paper", "train.max_steps=1",
                 "train.epochs=1", "train.batch_size=8", "train.eval_batch_size=8", "train.test_every_epoch=false")
    assert fit(cfg)["status"] == "completed"


def test_logged_lr_is_the_epochs_own(tiny_root, tmp_path):
    cfg = config(tiny_root, tmp_path, "experiment=mlp_mnist", "optim.schedule=zaremba", "optim.decay_start=1",
                 "optim.decay=2.0", "optim.lr=0.01", *SMALL[:-1], "train.epochs=2")
    fit(cfg)
    rows = [json.loads(l) for l in (runstore.run_dir(cfg) / "metrics.jsonl").read_text().splitlines()]
    assert [r["lr"] for r in rows] == pytest.approx([0.01, 0.005])


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs CUDA")
@pytest.mark.parametrize("experiment,regulariser,sizes", [
    ("mlp_mnist", "qsd", ["train.batch_size=32"]),
    ("cnn_fashion", "dropout", ["train.batch_size=32"]),
    # 21 full training windows and 17 one-stream validation windows a pass, so both replay
    ("lstm_ptb", "qsd", ["train.batch_size=4", "train.eval_batch_size=1"]),
])
def test_cuda_graphs_train_as_eager_does(tiny_root, tmp_path, monkeypatch, experiment, regulariser, sizes):
    """The captured step replays the eager step's kernels: same numbers (to float rounding), and
    the run keeps its hash."""
    replays = []
    replay = torch.cuda.CUDAGraph.replay
    monkeypatch.setattr(torch.cuda.CUDAGraph, "replay", lambda g: replays.append(1) or replay(g))
    common = [f"experiment={experiment}", f"regulariser={regulariser}", "scale=smoke", "device=cuda",
              "data.limit_train=null", "data.limit_eval=null", "train.epochs=2", *sizes]
    eager = config(tiny_root, tmp_path / "eager", *common, "train.cuda_graphs=false")
    graphed = config(tiny_root, tmp_path / "graphed", *common, "train.cuda_graphs=true")
    assert runstore.run_dir(eager).name == runstore.run_dir(graphed).name
    a = fit(eager)
    assert not replays
    b = fit(graphed)
    assert b["cuda_graphs"] and b["status"] == "completed" and replays
    assert b["test_loss"] == pytest.approx(a["test_loss"], rel=1e-4), (a, b)


def test_cuda_graphs_auto_trains_eagerly_without_cuda(tiny_root, tmp_path):
    cfg = config(tiny_root, tmp_path, *SMALL)
    assert cfg.train.cuda_graphs == "auto" and fit(cfg)["cuda_graphs"] is False


def test_cuda_graphs_auto_captures_images_and_language_models_on_cuda(tiny_root, tmp_path):
    """``auto`` on a CUDA device: image classification and language models (both measured faster on a
    GPU, same numbers), never the length-bucketed sentiment batches, nor a compiled model."""
    from qsd.train import use_cuda_graphs

    cuda = torch.device("cuda")  # a device object: nothing runs on it
    for experiment, captured in (("mlp_mnist", True), ("cnn_fashion", True), ("lstm_ptb", True), ("lstm_imdb", False)):
        assert use_cuda_graphs(config(tiny_root, tmp_path, f"experiment={experiment}", *SMALL), cuda) is captured
    assert not use_cuda_graphs(config(tiny_root, tmp_path, "experiment=lstm_ptb", "train.compile=true", *SMALL), cuda)
    assert not use_cuda_graphs(config(tiny_root, tmp_path, "experiment=lstm_ptb", *SMALL), torch.device("cpu"))
