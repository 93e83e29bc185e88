"""Which code produced a number: the git commit of this checkout (``unknown`` outside git)."""
from __future__ import annotations

import functools
import subprocess
from pathlib import Path


@functools.lru_cache(maxsize=1)
def git_commit() -> str:
    """Short hash of HEAD, with ``+dirty`` when tracked files differ from it."""
    here = Path(__file__).parent
    try:
        run = lambda *a: subprocess.run(["git", *a], capture_output=True, text=True, cwd=here, check=True).stdout.strip()
        return run("rev-parse", "--short", "HEAD") + ("+dirty" if run("status", "--porcelain", "--untracked-files=no") else "")
    except (OSError, subprocess.CalledProcessError):
        return "unknown"
