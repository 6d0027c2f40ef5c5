"""Commands beside Lightning's (``videodiff data|encode|sample|fvd``): argparse front ends over the library."""

from __future__ import annotations

import sys
from collections.abc import Callable

from rich.console import Console


def run_reporting_errors(action: Callable, args, errors: tuple[type[BaseException], ...], code: int) -> int:
    """Run ``action(args, console)``; an expected error becomes one ``error: ...`` line and exit ``code``."""
    try:
        return action(args, Console(file=sys.stdout, soft_wrap=True))
    except errors as e:
        print(f"error: {e}", file=sys.stderr)
        return code
