"""Progress bars of the phases that take more than a few seconds (tqdm: what it does, rate, ETA).

A bar draws on stderr only when stderr is a terminal (tqdm's ``disable=None``), so log files, CI
output and pipes stay clean. ``PROMPTOPT_PROGRESS=0`` switches bars off, ``PROMPTOPT_PROGRESS=1``
on (e.g. to watch a job's log). Bars never replace the INFO log lines a phase writes when it ends.
"""

from __future__ import annotations

import os
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from tqdm import tqdm

_SWITCH = {"0": True, "false": True, "off": True, "1": False, "true": False, "on": False}


def progress_bar(*, total: int | None, desc: str, unit: str = "it", initial: int = 0) -> tqdm:
    """A tqdm bar (use as a context manager, ``update(n)``, ``set_postfix_str(...)``).

    Args:
        total: Units of work (``None``: unknown, no ETA).
        desc: What the phase does (``"LightGCN BPR"``, ``"best_fixed: templates"``).
        unit: What one unit is (``"epoch"``, ``"episode"``, ``"trial"``).
        initial: Units already done (a resumed phase).
    """
    from tqdm.auto import tqdm

    disable = _SWITCH.get(os.environ.get("PROMPTOPT_PROGRESS", "").strip().lower())
    return tqdm(total=total, initial=initial, desc=desc, unit=unit, disable=disable, leave=False,
                dynamic_ncols=True)
