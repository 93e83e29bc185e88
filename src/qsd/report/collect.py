"""Gather every run of one scale into flat CSV files under ``results/<scale>/``.

It reads the run folders it is given (the suite's finished runs, found in a runs root or in the
committed ``results/<scale>/runs/``), so a stray run never reaches a figure.
"""
from __future__ import annotations

import csv
import io
import json
import logging
from pathlib import Path

import torch
from omegaconf import OmegaConf
from scipy import stats

from ..io import write_text
from ..provenance import pair_commit
from .recipes import default_qsd

log = logging.getLogger(__name__)
REG_KEYS = ("n", "cv", "alpha", "mapping", "granularity")


def _flat_config(cfg) -> dict:
    reg = cfg.get("regulariser", {})
    row = {"experiment": cfg["name"], "model": cfg["model"]["name"], "data": cfg["data"]["name"],
           "regulariser": reg.get("name"), "seed": cfg["seed"], "epochs": cfg["train"]["epochs"]}
    for slot, rate in cfg.get("rates", {}).items():
        row[f"rate_{slot}"] = rate
    for k in REG_KEYS:
        row[k] = reg.get(k, "")
    return row


def _read_run(path: Path) -> tuple[dict, list[dict], dict] | None:
    try:
        summary = json.loads((path / "summary.json").read_text())
        cfg = OmegaConf.to_container(OmegaConf.load(path / "config.yaml"), resolve=True)
        metrics = [json.loads(l) for l in (path / "metrics.jsonl").read_text().splitlines() if l.strip()]
    except (OSError, ValueError) as e:
        log.warning("skipping unreadable run %s (%s)", path, e)
        return None
    return summary, metrics, cfg


def _to_csv(rows: list[dict]) -> str:
    keys: list[str] = []
    for r in rows:
        keys += [k for k in r if k not in keys]
    buf = io.StringIO()
    w = csv.DictWriter(buf, fieldnames=keys, lineterminator="\n")
    w.writeheader()
    w.writerows(rows)
    return buf.getvalue()


def collect(paths: dict[Path, dict[str, str]], out: Path) -> int:
    """Write runs.csv, curves.csv, sparsity.csv, weights.csv and weights_ks.csv from the finished run
    folders ``paths``, each with the columns the suite adds to its runs.csv row: ``figures`` (the ids of
    the figures and tables that ask for it, which each caption's commits are taken from) and
    ``lengthens`` (for the gate's longer runs, the run it trains for more epochs). Returns how many were read."""
    runs, curves, sparsity, weights, models = [], [], [], [], {}
    for path, columns in paths.items():
        got = _read_run(path)
        if got is None:
            continue
        summary, metrics, cfg = got
        base = {**_flat_config(cfg), "run": path.name, "status": summary["status"]}
        row = {**base, "metric": summary.get("metric", ""), "test_metric": summary.get(f"test_{summary.get('metric')}", ""),
               "test_loss": summary.get("test_loss", ""), "epochs_done": summary.get("epochs_done", ""),
               "wall_s": summary.get("wall_s", ""), "device": summary.get("device", ""),
               "device_name": summary.get("device_name", ""), "jobs": summary.get("jobs", ""),
               "stack": summary.get("stack", 1),  # runs before stacked training trained one a process
               "threads": summary.get("threads", ""), "commit": (summary.get("versions") or {}).get("commit", "unknown"),
               "figures": columns.get("figures", ""), "lengthens": columns.get("lengthens", "")}
        if summary.get("continued_from"):  # its first epochs are its shorter twin's; wall_s times the rest
            row["continued_from"] = summary["continued_from"]["epochs"]
        for k, v in (summary.get("final_valid") or {}).items():
            row[f"valid_{k}"] = v
        runs.append(row)
        for m in metrics:
            curves.append({"run": path.name, **{k: base[k] for k in ("experiment", "regulariser", "seed")}, **m})
        for layer, s in (summary.get("sparsity") or {}).items():
            if s:
                sparsity.append({**base, "layer": layer, **s})
        for layer, ws in (summary.get("weights") or {}).items():
            for kind, w in ws.items():
                weights.append({**base, "layer": layer, "kind": kind, "mean": w["mean"], "sd": w["sd"], "n": w["n"],
                                "hist_edges": json.dumps(w["hist_edges"]), "hist_counts": json.dumps(w["hist_counts"])})
        if summary["status"] == "completed":
            models[path] = {**base, "commit": row["commit"]}
    out.mkdir(parents=True, exist_ok=True)
    ks = _weights_ks(models, _read_csv(out / "weights_ks.csv"))
    for name, rows in (("runs", runs), ("curves", curves), ("sparsity", sparsity), ("weights", weights),
                       ("weights_ks", ks)):
        write_text(out / f"{name}.csv", _to_csv(rows))
    return len(runs)


def _read_csv(path: Path) -> list[dict]:
    try:
        with open(path, newline="") as f:
            return list(csv.DictReader(f))
    except OSError:
        return []


def _weights_ks(models: dict[Path, dict], previous: list[dict]) -> list[dict]:
    """Two-sample KS statistic between dropout- and QSD-trained weights, per layer and seed, for runs
    that differ only in the regulariser (same experiment, seed, rates and epochs), with ``weights_commit``: the
    commit of the runs whose weights were compared. A pair whose weights (``model.pt``, never committed) are
    not on this machine keeps its rows from ``previous``; a kept row without ``weights_commit`` was computed
    from these runs' own weights."""
    def key(b: dict) -> tuple:
        rates = tuple((k, v) for k, v in sorted(b.items()) if k.startswith("rate_"))
        return rates + (("experiment", b["experiment"]), ("seed", b["seed"]), ("epochs", b["epochs"]))

    by_key: dict[tuple, dict[str, Path]] = {}
    for path, base in models.items():
        if base["regulariser"] == "dropout" or (base["regulariser"] == "qsd" and all(
                base[k] == v for k, v in default_qsd().items())):
            by_key.setdefault(key(base), {})[base["regulariser"]] = path
    rows = []
    for k, pair in by_key.items():
        if set(pair) != {"dropout", "qsd"}:
            continue
        names = {"run_dropout": pair["dropout"].name, "run_qsd": pair["qsd"].name}
        commit = pair_commit(*(models[p]["commit"] for p in pair.values()))
        if not all((p / "model.pt").exists() for p in pair.values()):
            rows += [{**r, "weights_commit": r.get("weights_commit") or commit} for r in previous
                     if (r.get("run_dropout"), r.get("run_qsd")) == tuple(names.values())]
            continue
        a, b = (torch.load(pair[r] / "model.pt", map_location="cpu", weights_only=True) for r in ("dropout", "qsd"))
        for name in a:
            if name.endswith(("weight", "bias")) and a[name].dim() in (1, 2, 4) and name in b and "embed" not in name:
                res = stats.ks_2samp(a[name].flatten().numpy(), b[name].flatten().numpy())
                rows.append({**dict(k), **names, "param": name, "ks": float(res.statistic), "p": float(res.pvalue),
                             "weights_commit": commit})
    return rows
