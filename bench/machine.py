"""What every benchmark records about the machine it ran on, so a number says whether it was idle.

``started = load_now()`` before the work, ``machine(started)`` after it: cores, platform, Python, the load
average at both ends and a label that says ``idle`` only when the 1-minute load stayed under half the cores
at both ends (this 2-core machine is shared with other engineers' jobs; a busy run's timings are noisy).
"""

from __future__ import annotations

import os
import platform

__all__ = ["load_now", "machine"]


def load_now() -> list[float]:
    return [round(x, 2) for x in os.getloadavg()]


def machine(loadavg_start: list[float]) -> dict:
    end, cpus = load_now(), os.cpu_count() or 1
    idle = max(loadavg_start[0], end[0]) < 0.5 * cpus
    return {"cpus": cpus, "platform": platform.platform(), "python": platform.python_version(),
            "loadavg_start": loadavg_start, "loadavg_end": end, "label": "idle" if idle else "not idle"}
