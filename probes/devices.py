"""Where the model runs: one setting, ``model.device``, from which everything else follows.

The Trainer's accelerator and devices (extraction, under DDP one GPU per process), the
capture, ``Scorer`` scoring, ``evaluate.py --data`` and the ``generate`` builder all read the
device from here. A request for CUDA where there is none is an error that says so, never a
silent CPU run.

    auto     CUDA when torch sees a GPU, else the CPU (the default)
    cpu      the CPU
    cuda     the first GPU (under DDP: the GPU of this process's local rank)
    cuda:N   GPU N (one process)

``model.device_map: auto`` instead spreads a model too big for one GPU over every visible
GPU, layer by layer (Accelerate's ``device_map``); the capture's hooks still see each layer
on its own GPU. It runs in one process.
"""

from __future__ import annotations

import os
import re

import torch

from .errors import ProbesError

DEVICE_RE = re.compile(r"auto|cpu|cuda(:\d+)?")
DEVICE_MAPS = ("auto", "balanced", "balanced_low_0", "sequential")


class DeviceError(ProbesError, RuntimeError):
    """The requested device does not exist on this machine; the message says what does."""


def cuda_missing_reason() -> str:
    """Why torch sees no GPU, in words."""
    if torch.version.cuda is None:
        return f"this torch ({torch.__version__}) was built without CUDA"
    visible = os.environ.get("CUDA_VISIBLE_DEVICES")
    where = f" (CUDA_VISIBLE_DEVICES={visible!r})" if visible is not None else ""
    return f"torch {torch.__version__} sees no GPU{where}"


def resolve_device(spec: str, option: str = "model.device") -> torch.device:
    """The ``torch.device`` for a ``model.device`` value; CUDA must exist when asked for.

    Raises:
        DeviceError: ``cuda`` or ``cuda:N`` on a machine without CUDA (or without GPU N).
    """
    if not DEVICE_RE.fullmatch(spec):
        raise DeviceError(f"option {option!r}: expected auto, cpu, cuda or cuda:N, got {spec!r}")
    if spec == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    if spec == "cpu":
        return torch.device("cpu")
    if not torch.cuda.is_available():
        raise DeviceError(
            f"option {option!r} is {spec!r}, but CUDA is not available: "
            f"{cuda_missing_reason()}; set {option} to cpu, or auto (a GPU when there is one)"
        )
    device = torch.device(spec)
    count = torch.cuda.device_count()
    if device.index is not None and device.index >= count:
        raise DeviceError(
            f"option {option!r} is {spec!r}, but this machine has {count} GPU(s) "
            f"(cuda:0 .. cuda:{count - 1})"
        )
    return device


def local_rank() -> int:
    """This process's rank on its node (torchrun, SLURM and Lightning's launcher set it)."""
    for name in ("LOCAL_RANK", "SLURM_LOCALID"):
        if name in os.environ:
            return int(os.environ[name])
    return 0


def process_device(spec: str, processes: int) -> torch.device:
    """Where this process loads the model: ``spec`` resolved, and under several processes
    per node (DDP) the GPU of its local rank, as Lightning assigns them."""
    device = resolve_device(spec)
    if device.type == "cuda" and processes > 1:
        if device.index is not None:
            raise DeviceError(
                f"option 'model.device' is {spec!r} with trainer.devices {processes}: each "
                "process takes the GPU of its local rank; set model.device: cuda"
            )
        return torch.device("cuda", local_rank())
    return device


def processes_per_node(spec: str, devices: int | str) -> int:
    """``trainer.devices`` as a number: ``auto`` is every GPU under CUDA, one CPU process."""
    if devices != "auto":
        return int(devices)
    device = resolve_device(spec)
    return torch.cuda.device_count() if device.type == "cuda" and device.index is None else 1


def trainer_placement(device: torch.device, processes: int) -> dict:
    """``accelerator`` and ``devices`` of the Lightning Trainer for a model on ``device``
    (``processes`` per node): Lightning then keeps the model where it was loaded."""
    if device.type == "cpu":
        return {"accelerator": "cpu", "devices": processes}
    if processes == 1:
        return {"accelerator": "gpu", "devices": [device.index or 0]}
    return {"accelerator": "gpu", "devices": processes}
