"""Memory a model needs, estimated from its config before anything is allocated, and refused when the machine
lacks it (``model.head.output_dim=10000000`` would otherwise be killed by the OOM killer at 21 GB).

The parameters are counted by :func:`contrastive_mer.model.module.model_bytes`, which builds the model on PyTorch's
``meta`` device (shapes only, no storage; it calls :func:`refuse_if_too_big` through ``check_model_fits``); the
estimate is the bytes of the parameters and buffers times a factor: 4 for training (weights, gradients, two
optimiser moments), 2 for loading a checkpoint (its weights and the model's). What is available is the kernel's
``MemAvailable``, lowered by a cgroup memory limit when one is set.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, Mapping

from contrastive_mer.errors import ConfigError

__all__ = ["available_memory", "refuse_if_too_big"]

#: times the parameter bytes: training (weights, gradients, two AdamW moments) and loading a checkpoint
TRAINING_FACTOR = 4
LOADING_FACTOR = 2


def _meminfo_available() -> int | None:
    try:
        for line in Path("/proc/meminfo").read_text().splitlines():
            if line.startswith("MemAvailable:"):
                return int(line.split()[1]) * 1024
    except (OSError, ValueError, IndexError):
        pass
    return None


def _cgroup_room() -> int | None:
    """What a cgroup (v2) memory limit still allows, or None without one."""
    try:
        limit = Path("/sys/fs/cgroup/memory.max").read_text().strip()
        used = int(Path("/sys/fs/cgroup/memory.current").read_text().strip())
    except (OSError, ValueError):
        return None
    return None if limit == "max" else max(0, int(limit) - used)


def available_memory() -> int | None:
    """Bytes this process may still allocate (None when the system does not say)."""
    found = [v for v in (_meminfo_available(), _cgroup_room()) if v is not None]
    return min(found) if found else None


def _dims(config: Mapping[str, Any] | Any) -> str:
    try:
        head = config["model"]["head"]
        return f"model.head.hidden_dim={head['hidden_dim']}, model.head.output_dim={head['output_dim']}"
    except (KeyError, TypeError):
        return "see its model section"


def refuse_if_too_big(model_bytes: int, config: Mapping[str, Any] | Any, what: str, *, training: bool) -> int:
    """Raise :class:`ConfigError` with the estimate when a model of ``model_bytes`` (parameters and buffers,
    see :func:`contrastive_mer.model.module.check_model_fits`) would need more memory than is available;
    ``what`` names the config (a file, a checkpoint). Returns the estimate in bytes."""
    need = model_bytes * (TRAINING_FACTOR if training else LOADING_FACTOR)
    room = available_memory()
    if room is not None and need > room:
        gib = 2 ** 30
        raise ConfigError(f"{what}: the model needs about {need / gib:.1f} GiB "
                          f"({'training: weights, gradients, optimiser state' if training else 'weights loaded'}; "
                          f"{_dims(config)}) but {room / gib:.1f} GiB are available; reduce the model's dimensions")
    return need
