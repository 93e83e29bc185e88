"""Run ``qsd.train`` or ``qsd.reproduce``'s collection and SIGKILL the process at a chosen point:

    QSD_KILL_WRITE=k   during the k-th atomic file write, after half its bytes reached the temp file
    (no variable)      run normally (the caller may kill it on a timer)

    python -m tests.faults.killer train <hydra overrides...>
    python -m tests.faults.killer collect <runs root> <scale> <out dir>
    python -m tests.faults.killer serve

``serve`` imports everything once, then forks one child per JSON line read from stdin
(``{"command": [...], "env": {...}, "log": path}``: a command as above, its extra environment, where its
output goes), prints the child's pid, then its exit code (negative: the signal that ended it). A
forked child is a whole process that a SIGKILL ends as it would a fresh one, without paying Python's
and torch's start-up, which is most of a small run's time.
"""
import io
import json
import os
import signal
import sys
import tempfile
import traceback
from pathlib import Path

from qsd import io as qio
from qsd import runstore

KILL_AT = int(os.environ.get("QSD_KILL_WRITE", "0"))
CHILD_TIMEOUT_S = 120  # a forked child still alive after this is ended by SIGALRM
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


def run(mode: str, args: list[str]) -> None:
    if mode == "train":
        from qsd.train import main

        sys.argv = ["qsd-train", *args]
        main()
    else:
        from qsd.report import collect as collect_module

        collect_module.write_text = lambda p, text: dying_atomic_write(p, lambda f: f.write(text.encode()))
        collect_module.collect({p: {} for p in sorted(Path(args[0]).glob(f"{args[1]}/*/*"))}, Path(args[2]))


def _child(request: dict) -> None:
    """In a forked child: run one command with its environment and output, then exit (never returns)."""
    global KILL_AT
    code = 1
    try:
        signal.alarm(CHILD_TIMEOUT_S)
        os.environ.update(request["env"])
        KILL_AT = int(request["env"].get("QSD_KILL_WRITE", "0"))
        log = os.open(request["log"], os.O_WRONLY | os.O_CREAT | os.O_TRUNC)
        null = os.open(os.devnull, os.O_RDONLY)
        for fd, to in ((null, 0), (log, 1), (log, 2)):
            os.dup2(fd, to)
        run(request["command"][0], request["command"][1:])
        code = 0
    except SystemExit as e:  # as the interpreter maps it: None is success, an int itself, anything else 1
        code = 0 if e.code is None else e.code if isinstance(e.code, int) else 1
    except BaseException:  # noqa: BLE001 -- reported in the log, as a fresh process would
        traceback.print_exc()
    finally:
        sys.stdout.flush()
        sys.stderr.flush()
        os._exit(code)


def serve() -> None:
    import numpy as np
    import torch._dynamo  # noqa: F401 -- what a torch optimiser imports when it is built: seconds
    import qsd.report.collect  # noqa: F401 -- imported once, here, for every child
    import qsd.train  # noqa: F401
    from qsd.regularisers.qsd_cpu import qsd_mask_cpu

    qsd_mask_cpu((4,), 0, np.zeros(1, dtype=np.int64), 0.5, 1.0)  # loads the compiled kernel (one thread)

    for line in sys.stdin:
        pid = os.fork()
        if pid == 0:
            _child(json.loads(line))
        print(pid, flush=True)
        print(os.waitstatus_to_exitcode(os.waitpid(pid, 0)[1]), flush=True)


if __name__ == "__main__":
    if sys.argv[1] == "serve":
        serve()
    else:
        run(sys.argv[1], sys.argv[2:])
