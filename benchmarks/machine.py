"""The machine a benchmark ran on, for its results files."""

import os
import platform
from pathlib import Path

import torch


def machine():
    cpu = next((line.split(":", 1)[1].strip() for line in Path("/proc/cpuinfo").read_text().splitlines()
                if line.startswith("model name")), platform.processor())
    return {"cpu": cpu, "cores": os.cpu_count(), "torch_threads": torch.get_num_threads(),
            "python": platform.python_version(), "torch": torch.__version__}


def describe():
    m = machine()
    return f"{m['cpu']}, {m['cores']} cores, Python {m['python']}, torch {m['torch']}"
