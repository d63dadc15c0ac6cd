"""One figure per line, in a form `bench/table.py` gathers into `make bench`'s single table.

Each benchmark prints its own readable output and, for every figure an issue sets a target for,
calls :func:`figure`.  That prints one line starting with ``FIGURE`` followed by compact JSON, so
that the gathering script does not have to parse prose; a reader skimming the output sees the
same figure beside its target.
"""

from __future__ import annotations

import json
import sys
from typing import Literal

Direction = Literal["min", "max", "none"]


def figure(
    name: str,
    value: float,
    unit: str,
    *,
    target: float | None = None,
    better: Direction = "none",
    anchor: str = "",
    command: str = "",
) -> None:
    """Print one measured figure with its target (``better="min"``: at least; ``"max"``: at most).

    ``anchor`` names what the figure is compared with when the issue asks for a ratio (for
    example Postfix's rate in the same run); ``command`` is how a reader reproduces it.
    """
    met: bool | None
    if target is None or better == "none":
        met = None
    elif better == "min":
        met = value >= target
    else:
        met = value <= target
    record = {
        "name": name,
        "value": round(value, 3),
        "unit": unit,
        "target": target,
        "better": better,
        "met": met,
        "anchor": anchor,
        "command": command or " ".join(["python", *sys.argv]),
    }
    print("FIGURE " + json.dumps(record, sort_keys=True), flush=True)
