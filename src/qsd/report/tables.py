"""Reading collected CSV files and writing tables (CSV + Markdown) that state their scale."""
from __future__ import annotations

import csv
import io
import math
from collections import defaultdict
from pathlib import Path
from typing import Callable, Iterable

from ..io import write_text
from .style import provenance


TEXT_COLUMNS = {"commit", "weights_commit"}  # a short hash may read as a number: "1234567", "2217e55"


def _num(v: str):
    if v == "":
        return v
    try:
        f = float(v)
    except ValueError:
        return v
    return int(f) if f.is_integer() and "." not in v and "e" not in v.lower() and "inf" not in v.lower() else f


def read_csv(path: Path) -> list[dict]:
    """Rows of a collected CSV with numbers parsed; [] when the file is missing or empty."""
    if not path.exists() or path.stat().st_size == 0:
        return []
    with open(path, newline="") as f:
        return [{k: v if k in TEXT_COLUMNS else _num(v) for k, v in row.items()} for row in csv.DictReader(f)]


def group(rows: Iterable[dict], key: Callable[[dict], object]) -> dict:
    out: dict = defaultdict(list)
    for r in rows:
        out[key(r)].append(r)
    return dict(out)


def fmt(v, digits: int = 4) -> str:
    if isinstance(v, float):
        return "n/a" if math.isnan(v) else f"{v:.{digits}g}" if abs(v) < 1e4 else f"{v:.0f}"
    return str(v)


def write_table(out: Path, stem: str, rows: list[dict], scale: str, title: str) -> None:
    """``stem.csv`` and ``stem.md`` (with a title line naming scale and commit)."""
    keys = list(rows[0]) if rows else ["empty"]
    buf = io.StringIO()
    w = csv.DictWriter(buf, fieldnames=keys, lineterminator="\n")
    w.writeheader()
    w.writerows(rows)
    write_text(out / f"{stem}.csv", buf.getvalue())
    smoke = " **SMOKE scale: pipeline check only; these numbers mean nothing.**" if scale == "smoke" else ""
    made = "; ".join(filter(None, (f"scale: {scale}", provenance(out, stem))))
    md = [f"**{title}** ({made}).{smoke}", "",
          "| " + " | ".join(keys) + " |", "|" + "---|" * len(keys)]
    md += ["| " + " | ".join(fmt(r.get(k, "")) for k in keys) + " |" for r in rows]
    write_text(out / f"{stem}.md", "\n".join(md) + "\n")


def write_missing(res: Path, stem: str, scale: str, what: str) -> None:
    """``stem.csv/.md`` saying there are no completed runs for ``what`` at this scale."""
    write_table(res, stem, [{"status": f"no completed runs for {what} at this scale"}], scale, stem)
