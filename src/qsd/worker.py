"""``python -m qsd.worker``: a long-lived process that trains runs one after another, so that a run
does not pay Python's, torch's and Hydra's start-up (seconds, more than a smoke run's training).

Each line on stdin is one run's ``qsd-train`` overrides as a JSON list, or several runs' as a list of
such lists, trained as one stack (``train.fit_group``). The output goes to stdout (the queue writes it
to the runs' ``train.log``), then one line: ``DONE`` and the exit code of ``train.fit_or_record``.
"""
from __future__ import annotations

import json
import logging
import signal
import sys

from hydra import compose, initialize_config_dir

from .train import CONFIG_DIR, fit_or_record

DONE = "\x1eQSD-RUN-DONE "
log = logging.getLogger("qsd.train")


def train(runs: list[list[str]]) -> int:
    """What ``qsd-train <overrides>`` does for each of ``runs``, in this process and as one stack where they
    stack; returns the exit code."""
    try:
        cfgs = [compose("train", overrides=overrides) for overrides in runs]
    except Exception as e:  # noqa: BLE001 -- Hydra's composition errors: a bad config
        log.error("%s", e)
        return 2
    return fit_or_record(*cfgs)


def main() -> None:
    # a kill (e.g. `timeout`, which signals the whole process group) stops the run as Ctrl-C does:
    # its last checkpoint stays and its lock is released
    signal.signal(signal.SIGTERM, signal.default_int_handler)
    logging.basicConfig(level=logging.INFO, format="[%(asctime)s] %(message)s", datefmt="%H:%M:%S",
                        stream=sys.stdout)
    with initialize_config_dir(config_dir=CONFIG_DIR, version_base="1.3"):
        try:
            for line in sys.stdin:
                job = json.loads(line)
                rc = train(job if job and isinstance(job[0], list) else [job])
                sys.stderr.flush()
                print(f"{DONE}{rc}", flush=True)
        except KeyboardInterrupt:  # Ctrl-C: the run keeps its last checkpoint and its lock is released
            log.info("stopped")
            sys.exit(130)


if __name__ == "__main__":
    main()
