"""What every benchmark row names: the machine it ran on (and how busy it was: these machines are shared)."""
from __future__ import annotations

import os
import platform


def machine(load: bool = True) -> str:
    """CPU model and core count, plus the 1-minute load average unless `load` is False."""
    model = platform.processor() or platform.machine()
    try:
        with open("/proc/cpuinfo") as f:
            model = next(line.split(":", 1)[1].strip() for line in f if line.startswith("model name"))
    except (OSError, StopIteration):
        pass
    text = f"{model}, {os.cpu_count()} cores"
    return f"{text}, load {os.getloadavg()[0]:.1f}" if load else text
