"""The optimiser/scheduler/progress state of a run as safetensors + JSON metadata (never pickle)."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import torch
from safetensors import safe_open
from safetensors.torch import save_file

from iadgpt.atomic import atomic_path


def _split_tensors(obj: Any, prefix: str, tensors: dict[str, torch.Tensor]) -> Any:
    """Replace every tensor in a nested dict/list with {"__tensor__": key}, collecting them."""
    if isinstance(obj, torch.Tensor):
        tensors[prefix] = obj.detach().to("cpu").contiguous().clone()
        return {"__tensor__": prefix}
    if isinstance(obj, dict):
        return {"__keys__": [[type(k).__name__, str(k)] for k in obj],
                "__values__": [_split_tensors(v, f"{prefix}.{k}", tensors) for k, v in obj.items()]}
    if isinstance(obj, list | tuple):
        return [_split_tensors(v, f"{prefix}.{i}", tensors) for i, v in enumerate(obj)]
    return obj


def _join_tensors(obj: Any, tensors: dict[str, torch.Tensor]) -> Any:
    if isinstance(obj, dict) and "__tensor__" in obj:
        return tensors[obj["__tensor__"]]
    if isinstance(obj, dict) and "__keys__" in obj:
        keys = [int(k) if kind == "int" else k for kind, k in obj["__keys__"]]
        return {k: _join_tensors(v, tensors) for k, v in zip(keys, obj["__values__"], strict=True)}
    if isinstance(obj, list):
        return [_join_tensors(v, tensors) for v in obj]
    return obj


def save_trainer_state(path: Path, optimizer: torch.optim.Optimizer, scheduler: Any,
                       progress: dict[str, Any]) -> None:
    """Write the state file of a checkpoint (its folder exists); the file is replaced atomically, so a
    run killed mid-save leaves the previous state file whole, never a torn one."""
    tensors: dict[str, torch.Tensor] = {}
    state = {
        "optimizer": _split_tensors(optimizer.state_dict(), "optimizer", tensors),
        "scheduler": _split_tensors(scheduler.state_dict(), "scheduler", tensors),
        "progress": progress,
    }
    tensors["rng.torch"] = torch.get_rng_state()
    if torch.cuda.is_available():
        for i, s in enumerate(torch.cuda.get_rng_state_all()):
            tensors[f"rng.cuda.{i}"] = s
    with atomic_path(path) as tmp:
        save_file(tensors, str(tmp), metadata={"trainer_state": json.dumps(state)})


def load_trainer_state(path: Path) -> tuple[dict, dict, dict[str, Any], dict[str, torch.Tensor]]:
    """(optimizer state dict, scheduler state dict, progress, rng tensors)."""
    with safe_open(str(path), framework="pt", device="cpu") as f:
        state = json.loads(f.metadata()["trainer_state"])
        tensors = {k: f.get_tensor(k) for k in f.keys()}  # noqa: SIM118 - safe_open has no iterator
    rng = {k: v for k, v in tensors.items() if k.startswith("rng.")}
    return (_join_tensors(state["optimizer"], tensors), _join_tensors(state["scheduler"], tensors),
            state["progress"], rng)
