"""Run one pipeline stage as a subprocess, announce it on one line, and record its command and duration.

``python -m videodiff.commands.stage --log DIR/timings.jsonl --name autoencoder -- videodiff fit ...``
(used by ``make demo``; the report reads the log back).
"""

from __future__ import annotations

import argparse
import json
import shlex
import subprocess
import sys
import time
from pathlib import Path


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m videodiff.commands.stage")
    parser.add_argument("--log", required=True, help="a .jsonl file to append the stage's record to")
    parser.add_argument("--name", required=True)
    parser.add_argument("command", nargs=argparse.REMAINDER, help="-- then the command")
    args = parser.parse_args(argv)
    command = args.command[1:] if args.command[:1] == ["--"] else args.command
    if not command:
        parser.error("give the stage's command after --")
    print(f"==> {args.name}: {shlex.join(command)}", flush=True)
    start = time.perf_counter()
    code = subprocess.call(command)
    seconds = time.perf_counter() - start
    print(f"==> {args.name}: {'done' if code == 0 else f'FAILED (exit {code})'} in {seconds:.1f} s", flush=True)
    if code == 0:
        Path(args.log).parent.mkdir(parents=True, exist_ok=True)
        record = {"stage": args.name, "seconds": round(seconds, 1), "command": shlex.join(command)}
        with open(args.log, "a") as f:
            f.write(json.dumps(record) + "\n")
    return code


if __name__ == "__main__":
    sys.exit(main())
