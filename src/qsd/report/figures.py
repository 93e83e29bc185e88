"""Every figure and table, drawn from the collected files in ``results/<scale>/`` alone.

Each ``render_<id>(res, scale)`` reads CSVs in ``res`` and writes ``<id>.png/.pdf`` plus the table of
the numbers behind it (``<id>.csv/.md``). Values are means over seeds with 95% intervals.
"""
from __future__ import annotations

import json
import math
from pathlib import Path

import numpy as np
import torch

from ..data import store as data_store
from ..regularisers import build
from . import recipes
from .compare import Arm, arm, compare, longer_runs, read_runs, valid_curves
from .gate import RULE, SHORT_RULE
from .stats import mean_ci, paired_difference, verdict
from .style import COLOURS, COLUMN_W, LABELS, plt, save
from .tables import fmt, group, read_csv, write_table

REGS = ["none", "dropout", "gaussian", "qsd"]


def is_default_qsd(r: dict) -> bool:
    return r["regulariser"] != "qsd" or all(r.get(k) == v for k, v in recipes.default_qsd().items())


def recipe_runs(rows: list[dict], experiment: str) -> list[dict]:
    """Runs of ``experiment`` at its recipe's rates with default QSD settings, whatever their status."""
    rates = recipes.recipe_rates(experiment)
    return [r for r in rows if r["experiment"] == experiment and all(r.get(k) == v for k, v in rates.items())
            and is_default_qsd(r)]


def main_runs(rows: list[dict], experiment: str) -> list[dict]:
    """The completed ``recipe_runs``."""
    return [r for r in recipe_runs(rows, experiment) if r["status"] == "completed"]


def not_testable(experiment: str, scale: str) -> str | None:
    """Why ``experiment`` is not run at ``scale`` (a manifest's ``not_testable``), or None."""
    for m in recipes.manifests().values():
        reason = (m.get("not_testable") or {}).get(experiment, {}).get(scale)
        if reason:
            return reason
    return None


def arms(rows: list[dict], curves: dict[str, list[float]], longer: dict[tuple[str, str], dict]) -> dict[str, Arm]:
    """regulariser -> Arm."""
    return {reg: arm(rr, curves, longer) for reg, rr in group(rows, lambda r: r["regulariser"]).items()}


def by_reg(rows: list[dict], value: str) -> dict[str, dict[int, float]]:
    """regulariser -> seed -> value."""
    out: dict[str, dict[int, float]] = {}
    for r in rows:
        if r.get(value, "") != "":
            out.setdefault(r["regulariser"], {})[r["seed"]] = float(r[value])
    return out


def ordered(regs) -> list[str]:
    return [g for g in REGS if g in regs] + sorted(set(regs) - set(REGS))


def _bar_panel(ax, values: dict[str, dict[int, float]], ylabel: str) -> list[dict]:
    rows = []
    for i, reg in enumerate(ordered(values)):
        s = mean_ci(values[reg].values())
        err = [[s["mean"] - s["lo"]], [s["hi"] - s["mean"]]] if s["n"] > 1 else None
        ax.bar(i, s["mean"], color=COLOURS.get(reg, "k"), yerr=err, capsize=3, width=0.7)
        ax.scatter([i] * len(values[reg]), list(values[reg].values()), s=6, color="k", zorder=3)
        rows.append({"regulariser": reg, **s})
    ax.set_xticks(range(len(values)), [LABELS.get(r, r) for r in ordered(values)], rotation=20)
    ax.set_ylabel(ylabel)
    return rows


def _on_grid(r: dict, grid: list[dict[str, float]]) -> dict[str, float] | None:
    """The grid point ``r`` was run at (its rates agree on every slot the point names), or None."""
    return next((g for g in grid if all(r.get(k) == v for k, v in g.items())), None)


def plain_log_axis(ax) -> None:
    """Log scale with plain numbers (2, 3, 4) rather than 2 x 10^0."""
    from matplotlib.ticker import LogLocator, ScalarFormatter

    ax.set_yscale("log")
    ax.yaxis.set_major_locator(LogLocator(subs=(1.0, 1.5, 2.0, 3.0, 5.0, 7.0)))
    ax.yaxis.set_major_formatter(ScalarFormatter())
    ax.yaxis.set_minor_formatter(plt.NullFormatter())


def absent_reason(experiment: str, scale: str) -> str:
    """Why ``experiment`` has no finished runs: not run at this scale (and why), its data set must be
    supplied by the user, or it has not been run yet."""
    if reason := not_testable(experiment, scale):
        return f"not run at {scale} scale: {reason}"
    data = recipes.experiment_data(experiment)
    if data_store.spec(data).obtain is None:
        return f"no runs: needs user-supplied {data} data, which cannot be fetched here (see README: data)"
    return "no finished runs yet at this scale"


def _missing(res: Path, stem: str, scale: str, what: str) -> None:
    write_table(res, stem, [{"status": f"no completed runs for {what} at this scale"}], scale, stem)


# ------------------------------------------------------------------ figures
def render_fig1_masks(res: Path, scale: str) -> None:
    torch.manual_seed(0)
    cases = [("dropout", {}), ("qsd", {"n": 4, "cv": 0.0, "alpha": math.inf}), ("qsd", {}),
             ("qsd", {"n": 8}), ("qsd", {"cv": 1.0}), ("qsd", {"alpha": 0.3}), ("qsd", {"mapping": "failure"}),
             ("qsd", {"mapping": "variance"})]
    fig, axes = plt.subplots(len(cases), 1, figsize=(COLUMN_W, 0.95 * len(cases)), sharex=True, layout="constrained")
    rows = []
    for ax, (name, params) in zip(axes, cases):
        mod = build(name, rate=0.5, **params).train()
        m = mod(torch.ones(400_000)).double()
        exact = mod.moments() if name == "qsd" else {"mean": 1.0, "var": 1.0, "p_zero": 0.5}
        label = "dropout" if name == "dropout" else \
            f"QSD n={mod.n}, CV={mod.cv}, \u03b1={mod.alpha:g}, {mod.mapping} mapping"
        nz = m[m > 0].numpy()
        bins = np.linspace(0, 4, 81)
        ax.hist(nz, bins=bins, weights=np.full(len(nz), 1 / (len(m) * (bins[1] - bins[0]))), color=COLOURS[name])
        sampled = {"mean": m.mean().item(), "var": m.var().item(), "p_zero": (m == 0).double().mean().item()}
        ax.text(0.01, 0.95, label, transform=ax.transAxes, ha="left", va="top", fontsize=6, weight="bold")
        ax.text(0.99, 0.7, f"var {sampled['var']:.3f} (exact {exact['var']:.3f})\n"
                            f"P(m=0) {sampled['p_zero']:.3f} (exact {exact['p_zero']:.3f})",
                transform=ax.transAxes, ha="right", va="top", fontsize=6)
        ax.set_ylabel("density", fontsize=6)
        ax.set_ylim(0, 1.8 * max(ax.get_ylim()[1], 1e-9))
        rows.append({"mask": label, **{f"sampled_{k}": v for k, v in sampled.items()},
                     **{f"exact_{k}": v for k, v in exact.items()}})
    axes[-1].set_xlabel("mask value m > 0 (multiplies the unit's output; P(m = 0) given as text)")
    save(fig, res, "fig1_masks", scale, "400,000 draws per mask, rate 0.5")
    write_table(res, "fig1_masks", rows, scale, "Mask moments: sampled vs exact (rate 0.5)")


def render_fig2_mlp_curves(res: Path, scale: str) -> None:
    runs = {r["run"] for r in main_runs(read_runs(res), "mlp_mnist")}
    curves = [c for c in read_csv(res / "curves.csv") if c["run"] in runs and c.get("test_error", "") != ""]
    if not curves:
        return _missing(res, "fig2_mlp_curves", scale, "mlp_mnist")
    fig, ax = plt.subplots(figsize=(COLUMN_W, 2.4))
    rows = []
    for reg, rr in sorted(group(curves, lambda c: c["regulariser"]).items(), key=lambda kv: ordered([kv[0]])):
        epochs = sorted({c["epoch"] for c in rr})
        stats = [mean_ci([c["test_error"] for c in rr if c["epoch"] == e]) for e in epochs]
        mean = np.array([s["mean"] for s in stats])
        ax.plot(epochs, mean, color=COLOURS.get(reg), label=LABELS.get(reg, reg))
        lo, hi = np.array([s["lo"] for s in stats]), np.array([s["hi"] for s in stats])
        if not np.isnan(lo).all():
            ax.fill_between(epochs, lo, hi, color=COLOURS.get(reg), alpha=0.2, lw=0)
        rows += [{"regulariser": reg, "epoch": e, **s} for e, s in zip(epochs, stats)]
    ax.set_xlabel("epoch")
    ax.set_ylabel("test error (%)")
    plain_log_axis(ax)
    ax.legend(frameon=False)
    save(fig, res, "fig2_mlp_curves", scale, f"mean and 95% CI over seeds; {SHORT_RULE}")
    write_table(res, "fig2_mlp_curves", rows, scale, "MLP on MNIST: test error (%) by epoch")


def render_fig3_mlp_rates(res: Path, scale: str) -> None:
    grid = recipes.rate_grid("fig3_mlp_rates", "mlp_mnist")
    runs = [r for r in read_runs(res) if r["experiment"] == "mlp_mnist" and r["status"] == "completed"
            and r["regulariser"] in ("dropout", "qsd") and is_default_qsd(r) and _on_grid(r, grid)]
    if not runs:
        return _missing(res, "fig3_mlp_rates", scale, "mlp_mnist rate sweep")
    fig, ax = plt.subplots(figsize=(COLUMN_W, 2.4))
    rows = []
    for reg in ordered({r["regulariser"] for r in runs}):
        rates = sorted({r["rate_hidden"] for r in runs if r["regulariser"] == reg})
        stats = [mean_ci([r["test_metric"] for r in runs if r["regulariser"] == reg and r["rate_hidden"] == x]) for x in rates]
        m = np.array([s["mean"] for s in stats])
        err = np.array([[s["mean"] - s["lo"], s["hi"] - s["mean"]] for s in stats]).T
        ax.errorbar(rates, m, yerr=None if np.isnan(err).all() else err, color=COLOURS[reg], label=LABELS[reg],
                    marker="o", ms=3, capsize=3)
        rows += [{"regulariser": reg, "rate_hidden": x, **s} for x, s in zip(rates, stats)]
    ax.set_xlabel("hidden-layer rate r (input rate 0.2)")
    ax.set_ylabel("final test error (%)")
    ax.legend(frameon=False)
    save(fig, res, "fig3_mlp_rates", scale, f"mean and 95% CI over seeds; {SHORT_RULE}")
    write_table(res, "fig3_mlp_rates", rows, scale, "MLP on MNIST: final test error (%) by hidden rate")


SPARSITY = [("zero_frac_example", "fraction of zero units"), ("hoyer", "Hoyer sparsity"), ("dead_frac", "dead units (fraction)")]


def render_fig4_sparsity(res: Path, scale: str) -> None:
    runs = {r["run"] for r in main_runs(read_runs(res), "mlp_mnist")}
    sp = [s for s in read_csv(res / "sparsity.csv") if s["run"] in runs]
    if not sp:
        return _missing(res, "fig4_sparsity", scale, "mlp_mnist")
    layers = sorted({s["layer"] for s in sp}, key=lambda x: (len(str(x)), str(x)))
    regs = ordered({s["regulariser"] for s in sp})
    fig, axes = plt.subplots(1, len(SPARSITY), figsize=(2 * COLUMN_W, 2.2))
    rows = []
    width = 0.8 / len(regs)
    for ax, (key, label) in zip(axes, SPARSITY):
        for j, reg in enumerate(regs):
            stats = [mean_ci([s[key] for s in sp if s["regulariser"] == reg and s["layer"] == l]) for l in layers]
            x = np.arange(len(layers)) + (j - (len(regs) - 1) / 2) * width
            err = np.array([[s["mean"] - s["lo"], s["hi"] - s["mean"]] for s in stats]).T
            ax.bar(x, [s["mean"] for s in stats], width, yerr=None if np.isnan(err).all() else err,
                   color=COLOURS[reg], label=LABELS[reg], capsize=2)
            rows += [{"measure": key, "layer": f"hidden {i + 1}", "regulariser": reg, **s} for i, s in enumerate(stats)]
        ax.set_xticks(range(len(layers)), [f"hidden {i + 1}" for i in range(len(layers))])
        ax.set_ylabel(label)
    axes[0].legend(frameon=False)
    save(fig, res, "fig4_sparsity", scale, f"test set, masks off; mean and 95% CI over seeds; {SHORT_RULE}")
    gate = recipe_comparison(res, "mlp_mnist")["verdict"]
    diffs = []
    for key, _ in SPARSITY:
        for i, l in enumerate(layers):
            vals = by_reg([s for s in sp if s["layer"] == l], key)
            if "dropout" in vals and "qsd" in vals:
                d = paired_difference(vals["dropout"], vals["qsd"])
                diffs.append({"measure": key, "layer": f"hidden {i + 1}", "qsd_minus_dropout": d["diff"], "boot_lo": d["lo"],
                              "boot_hi": d["hi"], "t_lo": d["t_lo"], "t_hi": d["t_hi"],
                              "n_pairs": d["n_pairs"],
                              "verdict": gate if gate.startswith("not comparable") else
                              verdict(d, lower_is_better=False).replace("better", "sparser").replace("worse", "less sparse")})
    write_table(res, "fig4_sparsity", rows, scale, "Test-time sparsity of hidden ReLU layers (MLP, MNIST)")
    write_table(res, "fig4_sparsity_diff", diffs, scale, f"Sparsity: paired QSD - dropout differences ({SHORT_RULE})")


def render_fig5_weights(res: Path, scale: str) -> None:
    runs = {r["run"] for r in main_runs(read_runs(res), "mlp_mnist") if r["regulariser"] in ("dropout", "qsd")}
    w = [x for x in read_csv(res / "weights.csv") if x["run"] in runs]
    ks = [k for k in read_csv(res / "weights_ks.csv") if k["experiment"] == "mlp_mnist"
          and all(k.get(a) == b for a, b in recipes.recipe_rates("mlp_mnist").items())]
    if not w:
        return _missing(res, "fig5_weights", scale, "mlp_mnist dropout + qsd")
    layers = sorted({x["layer"] for x in w}, key=lambda x: (len(str(x)), str(x)))
    fig, axes = plt.subplots(2, len(layers), figsize=(2 * COLUMN_W, 3.2))
    rows = []
    for col, layer in enumerate(layers):
        for row, kind in enumerate(("weight", "bias")):
            ax = axes[row, col]
            param = f"{layer}.{kind}"
            for reg in ("dropout", "qsd"):
                sel = [x for x in w if x["layer"] == layer and x["kind"] == kind and x["regulariser"] == reg]
                if not sel:
                    continue
                for x in sel:  # one outline per seed
                    edges, counts = np.array(json.loads(x["hist_edges"])), np.array(json.loads(x["hist_counts"]))
                    ax.stairs(counts / counts.sum() / np.diff(edges), edges, color=COLOURS[reg], alpha=0.6,
                              label=LABELS[reg] if x is sel[0] else None)
                rows.append({"layer": layer, "kind": kind, "regulariser": reg,
                             "mean": mean_ci([x["mean"] for x in sel])["mean"], "sd": mean_ci([x["sd"] for x in sel])["mean"],
                             "n_seeds": len(sel)})
            kss = [k["ks"] for k in ks if k["param"] == param]
            title = f"layer {col + 1} {'weights' if kind == 'weight' else 'biases'}" + (f", KS {np.mean(kss):.3f}" if kss else "")
            ax.set_title(title, fontsize=6)
            ax.locator_params(axis="x", nbins=4)
            if col == 0:
                ax.set_ylabel("density")
            if row == 1:
                ax.set_xlabel("value")
            for r in rows[-2:]:
                if r["layer"] == layer and r["kind"] == kind:
                    r["ks_mean_over_seeds"] = float(np.mean(kss)) if kss else math.nan
    axes[0, 0].legend(frameon=False, fontsize=6)
    save(fig, res, "fig5_weights", scale, "KS: two-sample statistic dropout vs QSD, mean over seeds")
    write_table(res, "fig5_weights", rows, scale, "Trained weights and biases: mean, sd (averaged over seeds) and KS")


CNN_EXPERIMENTS = [("cnn_mnist", "MNIST, plain"), ("cnn_fashion", "Fashion, plain"),
                   ("cnn_fashion_extra", "Fashion, +BN+WD+aug"), ("wrn_cifar10", "CIFAR-10, WRN")]


def _grouped_bars(res, scale, stem, experiments, value, ylabel, title, transform=lambda v: v):
    runs = read_runs(res)
    present = [(e, lab) for e, lab in experiments if main_runs(runs, e)]
    if not present:
        return write_table(res, stem, [{"experiment": e, "status": absent_reason(e, scale)} for e, _ in experiments],
                           scale, stem)
    absent = "; ".join(f"{lab}: {absent_reason(e, scale)}" for e, lab in experiments if (e, lab) not in present)
    fig, axes = plt.subplots(1, len(present), figsize=(max(COLUMN_W, 1.6 * len(present)), 2.3), squeeze=False)
    rows = []
    for ax, (e, lab) in zip(axes[0], present):
        vals = {reg: {s: transform(v) for s, v in d.items()} for reg, d in by_reg(main_runs(runs, e), value).items()}
        lost = group([r for r in recipe_runs(runs, e) if r["status"] != "completed"], lambda r: r["regulariser"])
        rows += [{"experiment": e, **r, "lost_seeds": len(lost.get(r["regulariser"], []))}
                 for r in _bar_panel(ax, vals, ylabel if ax is axes[0][0] else "")]
        ax.set_title(lab)
        lo = min(min(v.values()) for v in vals.values())
        hi = max(max(v.values()) for v in vals.values())
        ax.set_ylim(max(0, lo - 0.3 * (hi - lo + 1e-9)), hi + 0.3 * (hi - lo + 1e-9))
    save(fig, res, stem, scale, f"bars: mean and 95% CI; dots: seeds; {SHORT_RULE}" + (f" | {absent}" if absent else ""))
    write_table(res, stem, rows, scale, title + (f". {absent}" if absent else ""))


def render_fig6_cnn(res: Path, scale: str) -> None:
    _grouped_bars(res, scale, "fig6_cnn", CNN_EXPERIMENTS, "test_metric", "test error (%)", "CNN test error (%)")


def render_fig7_lstm_lm(res: Path, scale: str) -> None:
    runs = main_runs(read_runs(res), "lstm_ptb")
    if not runs:
        reason = not_testable("lstm_ptb", scale)
        return write_table(res, "fig7_lstm_lm", [{"status": f"not testable at {scale} scale: {reason}"}], scale,
                           "fig7_lstm_lm") if reason else _missing(res, "fig7_lstm_lm", scale, "lstm_ptb")
    ids = {r["run"] for r in runs}
    curves = [c for c in read_csv(res / "curves.csv") if c["run"] in ids]
    fig, (ax1, ax2) = plt.subplots(1, 2, figsize=(2 * COLUMN_W, 2.3))
    rows = []
    for reg, rr in group(curves, lambda c: c["regulariser"]).items():
        epochs = sorted({c["epoch"] for c in rr})
        stats = [mean_ci([c["valid_ppl"] for c in rr if c["epoch"] == e]) for e in epochs]
        ax1.plot(epochs, [s["mean"] for s in stats], color=COLOURS.get(reg), label=LABELS.get(reg, reg))
        lo, hi = np.array([s["lo"] for s in stats]), np.array([s["hi"] for s in stats])
        if not np.isnan(lo).all():
            ax1.fill_between(epochs, lo, hi, color=COLOURS.get(reg), alpha=0.2, lw=0)
        rows += [{"regulariser": reg, "epoch": e, **{f"valid_ppl_{k}": v for k, v in s.items()}}
                 for e, s in zip(epochs, stats)]
    ax1.set_xlabel("epoch")
    ax1.set_ylabel("validation perplexity")
    plain_log_axis(ax1)
    ax1.legend(frameon=False)
    test_rows = _bar_panel(ax2, by_reg(runs, "test_metric"), "test perplexity")
    save(fig, res, "fig7_lstm_lm", scale, f"mean and 95% CI over seeds; {SHORT_RULE}")
    lost = group([r for r in recipe_runs(read_runs(res), "lstm_ptb") if r["status"] != "completed"],
                 lambda r: r["regulariser"])
    write_table(res, "fig7_lstm_lm", [{"regulariser": r["regulariser"], "test_ppl_mean": r["mean"], "lo": r["lo"],
                                       "hi": r["hi"], "n": r["n"], "lost_seeds": len(lost.get(r["regulariser"], []))}
                                      for r in test_rows], scale, "LSTM LM on PTB: test perplexity")
    write_table(res, "fig7_lstm_lm_curves", rows, scale, "LSTM LM on PTB: validation perplexity by epoch")


def render_fig8_sentiment(res: Path, scale: str) -> None:
    _grouped_bars(res, scale, "fig8_sentiment", [("lstm_imdb", "IMDB"), ("lstm_rt", "Rotten Tomatoes")],
                  "test_metric", "test accuracy (%)", "LSTM sentiment: test accuracy (%)", lambda v: 100.0 - v)


def render_fig9_sensitivity(res: Path, scale: str) -> None:
    runs = [r for r in read_runs(res) if r["experiment"] == "mlp_sensitivity" and r["status"] == "completed"]
    if not runs:
        return _missing(res, "fig9_sensitivity", scale, "mlp_sensitivity")
    sp = group([s for s in read_csv(res / "sparsity.csv") if s["experiment"] == "mlp_sensitivity"], lambda s: s["run"])
    for r in runs:
        layers = sp.get(r["run"], [])
        r["sparsity"] = float(np.mean([s["zero_frac_example"] for s in layers])) if layers else math.nan
    drop = [r for r in runs if r["regulariser"] == "dropout"]
    qsd = [r for r in runs if r["regulariser"] == "qsd"]
    variants = group(qsd, lambda r: (r["n"], r["cv"], r["alpha"], r["mapping"]))
    def summary(rr: list[dict]) -> dict:
        return {"valid_error_mean": mean_ci([r.get("valid_error", math.nan) for r in rr])["mean"],
                **{f"error_{k}": v for k, v in mean_ci([r["test_metric"] for r in rr]).items()},
                "sparsity_mean": mean_ci([r["sparsity"] for r in rr])["mean"]}

    rows = [{"regulariser": "dropout", "n": "", "cv": "", "alpha": "", "mapping": "", **summary(drop)}]
    for (n, cv, alpha, mapping), rr in sorted(variants.items(), key=lambda kv: tuple(map(str, kv[0]))):
        rows.append({"regulariser": "qsd", "n": n, "cv": cv, "alpha": alpha, "mapping": mapping, **summary(rr)})
    chosen = min((r for r in rows if r["regulariser"] == "qsd"), key=lambda r: r["valid_error_mean"], default=None)
    for r in rows:  # a setting is chosen on validation, never on test
        r["best_on_validation"] = r is chosen
    fig, axes = plt.subplots(1, 3, figsize=(2 * COLUMN_W, 2.3))
    grid = [r for r in rows if r["regulariser"] == "qsd" and r["alpha"] == 1.0 and r["mapping"] == "mean"]
    ns, cvs = sorted({r["n"] for r in grid}), sorted({r["cv"] for r in grid})
    for ax, key, label in ((axes[0], "error_mean", "test error (%)"), (axes[1], "sparsity_mean", "fraction of zero units")):
        if ns and cvs:
            img = np.full((len(cvs), len(ns)), np.nan)
            for r in grid:
                img[cvs.index(r["cv"]), ns.index(r["n"])] = r[key]
            im = ax.imshow(img, origin="lower", aspect="auto", cmap="viridis")
            ax.set_xticks(range(len(ns)), ns)
            ax.set_yticks(range(len(cvs)), cvs)
            ax.set_xlabel("release sites n")
            ax.set_ylabel("quantal CV")
            plt.colorbar(im, ax=ax, label=label)
            mid = np.nanmean(img)
            for (i, j), v in np.ndenumerate(img):
                if v == v:
                    ax.text(j, i, f"{v:.2f}", ha="center", va="center", fontsize=5, color="k" if v > mid else "w")
    ax = axes[2]
    others = sorted((r for r in rows if r["regulariser"] == "qsd" and (r["alpha"] != 1.0 or r["mapping"] != "mean")),
                    key=lambda r: (r["mapping"] != "mean", float(r["alpha"]), r["n"]))
    labels = [f"\u03b1={r['alpha']}" if r["mapping"] == "mean" else f"failure, n={r['n']}" for r in others]
    ax.errorbar(range(len(others)), [r["error_mean"] for r in others],
                yerr=np.nan_to_num(np.array([[r["error_mean"] - r["error_lo"], r["error_hi"] - r["error_mean"]] for r in others]).T)
                if others else None, fmt="o", color=COLOURS["qsd"], ms=3, capsize=2, label="QSD")
    if drop:
        ax.axhline(rows[0]["error_mean"], color=COLOURS["dropout"], label="dropout")
    ax.set_xticks(range(len(others)), labels, rotation=45)
    ax.set_ylabel("test error (%)")
    ax.legend(frameon=False)
    save(fig, res, "fig9_sensitivity", scale, "n x CV at alpha=1, mapping=mean; right: other alpha and the failure mapping")
    write_table(res, "fig9_sensitivity", rows, scale, "QSD sensitivity (MLP, MNIST): validation and test error (%) and "
                "mean zero fraction; the best setting is the one with the lowest validation error")


EXPERIMENT_NAMES = {"mlp_mnist": "MLP / MNIST (error %)", "cnn_mnist": "CNN / MNIST (error %)",
                    "cnn_fashion": "CNN / Fashion-MNIST (error %)",
                    "cnn_fashion_extra": "CNN+BN+WD+aug / Fashion-MNIST (error %)",
                    "wrn_cifar10": "WRN / CIFAR-10 (error %)", "lstm_ptb": "LSTM LM / PTB (test perplexity)",
                    "lstm_imdb": "LSTM / IMDB (error %)", "lstm_rt": "LSTM / Rotten Tomatoes (error %)"}


def recipe_comparison(res: Path, experiment: str) -> dict:
    """The recipe-rate comparison of ``experiment``: its arms and ``compare``'s result."""
    curves = valid_curves(read_csv(res / "curves.csv"))
    a = arms(recipe_runs(read_runs(res), experiment), curves, longer_runs(res))
    out = {"arms": a}
    if "dropout" in a and "qsd" in a:
        out.update(compare(a["dropout"], a["qsd"], a.get("none")))
    else:
        out["verdict"] = "not comparable: no dropout and QSD runs to compare"
    return out


def _comparison_cells(c: dict) -> dict[str, str]:
    return {"QSD - dropout": f"{fmt(c['qsd_minus_dropout'])} ({c['n_pairs']} pairs)",
            "paired t 95% CI": f"[{fmt(c['t_lo'])}, {fmt(c['t_hi'])}]",
            "bootstrap 95% CI": f"[{fmt(c['boot_lo'])}, {fmt(c['boot_hi'])}]",
            "dropout's further gain": c["dropout_gain"], "verdict": c["verdict"]}


def render_table1_summary(res: Path, scale: str) -> None:
    runs = read_runs(res)
    rows = []
    for e, label in EXPERIMENT_NAMES.items():
        if not recipe_runs(runs, e):
            reason = not_testable(e, scale)
            if reason:
                rows.append({"experiment": label, "verdict": f"not testable at {scale} scale: {reason}"})
            continue
        c = recipe_comparison(res, e)
        row = {"experiment": label, **{reg: c["arms"][reg].cell() for reg in ordered(c["arms"])}}
        if "qsd_minus_dropout" in c:
            row.update(_comparison_cells(c))
        else:
            row["verdict"] = c["verdict"]
        rows.append(row)
    if not rows:
        return _missing(res, "table1_summary", scale, "any experiment")
    keys = ["experiment", *ordered({k for r in rows for k in r if k in REGS}), "QSD - dropout", "paired t 95% CI",
            "bootstrap 95% CI", "dropout's further gain", "verdict"]
    write_table(res, "table1_summary", [{k: r.get(k, "") for k in keys} for r in rows], scale,
                "Final test metric per regulariser at the recipe's rates (mean ± sd over seeds; lost seeds counted) "
                "and the paired QSD - dropout difference (negative = QSD better; verdict from the paired t interval). "
                + RULE)


# experiment -> (row label, the rate slot that names a point of its grid)
TUNED = {"mlp_mnist": ("MLP / MNIST (error %)", "hidden"), "cnn_fashion": ("CNN / Fashion-MNIST (error %)", "hidden"),
         "lstm_imdb": ("LSTM / IMDB (error %)", "output"), "lstm_rt": ("LSTM / Rotten Tomatoes (error %)", "output")}


def _tuned_arm(rows: list[dict], grid: list[dict], curves: dict[str, list[float]], slot: str,
               longer: dict[tuple[str, str], dict] | None = None) -> tuple[Arm, dict[int, float]]:
    """Per seed, the grid point with the lowest final validation metric (ties: the lower rate), and
    that run's test metric: the Arm of the chosen runs and seed -> chosen rate of ``slot``. A seed
    with a diverged or failed run at some rate is judged on the rates that completed; a seed without
    a finished run at every grid point is left out."""
    chosen: dict[int, dict] = {}
    for seed, rr in group([r for r in rows if _on_grid(r, grid)], lambda r: r["seed"]).items():
        if len({tuple(sorted(_on_grid(r, grid).items())) for r in rr}) < len(grid):
            continue
        done = [r for r in rr if r["status"] == "completed" and r.get("valid_" + r["metric"], "") != ""]
        if done:
            chosen[seed] = min(done, key=lambda r: (float(r["valid_" + r["metric"]]), r["rate_" + slot]))
        else:
            chosen[seed] = rr[0]
    return arm(list(chosen.values()), curves, longer), {s: r["rate_" + slot] for s, r in chosen.items()}


def _picks(picked: dict[int, float], grid: list[float]) -> str:
    """The rates picked, by seed, and how many lie on the grid's edge (the best rate may lie beyond it):
    ``0.1, 0.1, 0.3 (2 at the grid's lowest)``."""
    text = ", ".join(f"{picked[s]:g}" for s in sorted(picked))
    edges = [f"{n} at the grid's {side}" for side, edge in (("lowest", min(grid)), ("highest", max(grid)))
             if (n := sum(r == edge for r in picked.values()))]
    return text + (f" ({', '.join(edges)})" if edges else "")


def render_table3_tuned(res: Path, scale: str) -> None:
    runs, curves, longer = read_runs(res), valid_curves(read_csv(res / "curves.csv")), longer_runs(res)
    rows = []
    for e, (label, slot) in TUNED.items():
        sel = [r for r in runs if r["experiment"] == e and is_default_qsd(r)]
        if not sel:
            continue
        grid = recipes.rate_grid("table3_tuned", e)
        none = arm([r for r in recipe_runs(runs, e) if r["regulariser"] == "none"], curves)
        tuned = {reg: _tuned_arm([r for r in sel if r["regulariser"] == reg], grid, curves, slot, longer)
                 for reg in ("dropout", "qsd")}
        recipe = recipe_comparison(res, e)["arms"]
        cases = []
        if all(a.test or a.lost for a, _ in tuned.values()):
            cases.append(("(b) each at its validation-best rate", tuned["dropout"], tuned["qsd"]))
        else:
            rows.append({"experiment": label, "comparison": "(b) each at its validation-best rate",
                         "verdict": f"not run at {scale} scale: no seed has a finished run at every rate of the grid"})
        if "dropout" in recipe and "qsd" in recipe:
            cases.append(("(a) recipe rate", (recipe["dropout"], {}), (recipe["qsd"], {})))
        for mapping, what in (("failure", "equal P(m=0)"), ("variance", "equal Var(m)")):
            matched = [r for r in runs if r["experiment"] == e and r["regulariser"] == "qsd" and r.get("mapping") == mapping
                       and all(r.get(k) == v for k, v in recipes.recipe_rates(e).items())]
            if matched and "dropout" in recipe:
                cases.append((f"(c) recipe rate, QSD at {what} ({mapping} mapping)", (recipe["dropout"], {}),
                              (arm(matched, curves), {})))
        for comparison, (d_arm, d_rates), (q_arm, q_rates) in cases:
            c = compare(d_arm, q_arm, none if none.test else None)
            for reg, a, picked in (("dropout", d_arm, d_rates), ("qsd", q_arm, q_rates)):
                rows.append({"experiment": label, "comparison": comparison, "regulariser": reg,
                             "best_rate": _picks(picked, [g["rate_" + slot] for g in grid]) if picked else "recipe",
                             "test": a.cell(), **(_comparison_cells(c) if reg == "qsd" else
                                                  {k: "" for k in _comparison_cells(c)})})
    if not rows:
        return _missing(res, "table3_tuned", scale, "the rate grids of " + " / ".join(TUNED))
    keys = ["experiment", "comparison", "regulariser", "best_rate", "test", "QSD - dropout", "paired t 95% CI",
            "bootstrap 95% CI", "dropout's further gain", "verdict"]
    write_table(res, "table3_tuned", [{k: r.get(k, "") for k in keys} for r in rows], scale,
                "QSD vs dropout (a) at the recipe's rate, (b) each at its own validation-best rate (hidden for the MLP "
                "and CNN, embedding = output for the LSTMs; picked per seed from the grid; best_rate lists the picks by "
                "seed and how many lie on the grid's edge, where the best rate may lie beyond it), (c) QSD at dropout's "
                "P(m=0) or Var(m). The headline is (b). " + RULE)


ANCHORS = [  # (anchor, experiment, regulariser, published, unit, scales)
    ("zaremba_small_ptb_test_ppl", "lstm_ptb_small", "none", 114.5, "test perplexity", ("cpu", "paper")),
    ("zaremba_medium_ptb_test_ppl", "lstm_ptb", "dropout", 82.7, "test perplexity", ("paper",)),
]


def render_anchors(res: Path, scale: str) -> None:
    runs = read_runs(res)
    rows = []
    for anchor, e, reg, published, unit, scales in ANCHORS:
        if scale not in scales:
            continue
        done = [r for r in main_runs(runs, e) if r["regulariser"] == reg]
        s = mean_ci([r["test_metric"] for r in done])
        within = abs(s["mean"] - published) <= 0.03 * published if done else False
        rows.append({"anchor": anchor, "published": published, "measured": s["mean"] if done else "not run",
                     "unit": unit, "command": f"qsd-train experiment={e} regulariser={reg} scale={scale} seed=0"
                                              + (f"..{s['n'] - 1} (mean)" if s["n"] > 1 else ""),
                     "seeds": s["n"], "within_3pct": within})
    if not rows:
        return _missing(res, "anchors", scale, "any published anchor")
    write_table(res, "anchors", rows, scale, "Published numbers the recipes' baselines must reach (within 3%)")


def render_table2_cost(res: Path, scale: str) -> None:
    path = res / "cost.json"
    if not path.exists():
        return _missing(res, "table2_cost", scale, "cost benchmark (run `make reproduce-all` or benchmarks/bench_step.py)")
    cost = json.loads(path.read_text())
    rows = [{"model": m, "regulariser": reg, **v} for m, regs in cost["models"].items() for reg, v in regs.items()]
    write_table(res, "table2_cost", rows, scale,
                f"Training-step time and saved-activation memory relative to dropout ({cost['device']}, "
                f"{cost['threads']} threads, median of {cost['repeats']} steps)")


RENDERERS = {name[len("render_"):]: fn for name, fn in globals().items() if name.startswith("render_")}
