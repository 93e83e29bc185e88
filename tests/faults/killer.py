"""Run ``qsd.train`` or ``qsd.reproduce`` and SIGKILL the process at a chosen point:

    QSD_KILL_WRITE=k   during the k-th atomic file write, after half its bytes reached the temp file
    (no variable)      run normally (the caller may kill it on a timer)

    python -m tests.faults.killer train <hydra overrides...>
    python -m tests.faults.killer collect <runs root> <scale> <out dir>
"""
import io
import os
import signal
import sys
import tempfile
from pathlib import Path

from qsd import io as qio
from qsd import runstore

KILL_AT = int(os.environ.get("QSD_KILL_WRITE", "0"))
_count = 0
_real = qio.atomic_write


def dying_atomic_write(path, write):
    global _count
    _count += 1
    if _count != KILL_AT:
        return _real(path, write)
    buf = io.BytesIO()
    write(buf)
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, _ = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    os.write(fd, buf.getvalue()[: len(buf.getvalue()) // 2])
    os.fsync(fd)
    os.kill(os.getpid(), signal.SIGKILL)


qio.atomic_write = dying_atomic_write
runstore.atomic_write = dying_atomic_write

if __name__ == "__main__":
    mode, args = sys.argv[1], sys.argv[2:]
    if mode == "train":
        from qsd.train import main

        sys.argv = ["qsd-train", *args]
        main()
    else:
        from qsd.report import collect as collect_module

        collect_module.write_text = lambda p, text: dying_atomic_write(p, lambda f: f.write(text.encode()))
        collect_module.collect({p: {} for p in sorted(Path(args[0]).glob(f"{args[1]}/*/*"))}, Path(args[2]))
