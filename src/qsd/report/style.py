"""Plot style shared by every figure: one colour per regulariser, paper-column sizes, a footer
stating the scale and the runs' seeds and commits (the drawing code's commit is named once per scale,
in ``drawn_at.md``, so that a figure changes only when what it shows changes)."""
from __future__ import annotations

import csv
import textwrap
from pathlib import Path

import matplotlib

from ..provenance import short_commit
from .recipes import manifests

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402

COLOURS = {"none": "#7f7f7f", "dropout": "#1f77b4", "gaussian": "#2ca02c", "qsd": "#d62728"}
LABELS = {"none": "no dropout", "dropout": "dropout", "gaussian": "Gaussian dropout", "qsd": "QSD"}
COLUMN_W = 3.5  # inches: one paper column
plt.rcParams.update({"font.size": 8, "axes.titlesize": 8, "axes.labelsize": 8, "legend.fontsize": 7,
                     "xtick.labelsize": 7, "ytick.labelsize": 7, "figure.dpi": 150, "savefig.bbox": "tight",
                     "axes.spines.top": False, "axes.spines.right": False,
                     "figure.constrained_layout.use": True})


def reads(stem: str) -> set[str]:
    """The manifests whose runs figure or table ``stem`` is drawn from: its own (the manifest id that
    ``stem`` begins with, e.g. fig4_sparsity for fig4_sparsity_diff) and those its manifest ``uses``."""
    own = max((i for i in manifests() if stem.startswith(i)), key=len, default=stem)
    return {own, *manifests().get(own, {}).get("uses", [])}


def spans(numbers: set[int]) -> str:
    """``0-4, 7`` for {0, 1, 2, 3, 4, 7}."""
    out, ordered = [], sorted(numbers)
    for i, n in enumerate(ordered):
        if i and n == ordered[i - 1] + 1:
            out[-1][1] = n
        else:
            out.append([n, n])
    return ", ".join(f"{a}-{b}" if b > a else f"{a}" for a, b in out)


def provenance(out: Path, stem: str) -> str:
    """'runs (seeds <s>) at commit <commits>' for the runs collected in ``out`` that figure or table ``stem``
    is drawn from (runs.csv's ``figures`` column; a row without one counts for every figure); '' without runs."""
    rows, ids = [], reads(stem)
    if (out / "runs.csv").exists():
        with open(out / "runs.csv", newline="") as f:
            rows = [row for row in csv.DictReader(f) if not row.get("figures") or ids & set(row["figures"].split())]
    if not rows:
        return ""
    commits, seeds = sorted({short_commit(row.get("commit") or "unknown") for row in rows}), {int(row["seed"]) for row in rows}
    return f"runs (seed{'s' * (len(seeds) > 1)} {spans(seeds)}) at commit {', '.join(commits)}"


def save(fig, out: Path, stem: str, scale: str, note: str = "") -> None:
    """Footer with scale and provenance, wrapped to the figure's width (6 pt: about 24 characters an
    inch), then PNG + PDF (with no creation date: the same figure, the same bytes)."""
    label = f"scale: {scale}" + (" (SMOKE: pipeline check only, numbers mean nothing)" if scale == "smoke" else "")
    footer = textwrap.fill(" | ".join(filter(None, (label, provenance(out, stem), note))), int(fig.get_figwidth() * 24))
    fig.text(0.01, -0.01, footer, fontsize=6, color="#555555", va="top")
    out.mkdir(parents=True, exist_ok=True)
    for ext in ("png", "pdf"):
        fig.savefig(out / f"{stem}.{ext}", metadata={"CreationDate": None} if ext == "pdf" else None)
    plt.close(fig)
