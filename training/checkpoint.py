"""Resumable training checkpoints without pickle.

Model and optimizer tensors go to one safetensors file; everything that is not a
tensor (epoch, history, optimizer hyper-parameters) to a JSON file beside it.
"""
from __future__ import annotations

import json
import os
from pathlib import Path

import torch
from safetensors.torch import load_file, save_file


def _atomic_write_text(path: Path, text: str) -> None:
    tmp = path.with_suffix(path.suffix + ".tmp")
    tmp.write_text(text)
    os.replace(tmp, path)


def _model_tensors(tensors: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """The model's state dict out of a checkpoint's tensors (keys prefixed "model.")."""
    return {k[len("model."):]: v for k, v in tensors.items() if k.startswith("model.")}


def save_checkpoint(path: Path, model: torch.nn.Module, optimizer: torch.optim.Optimizer, meta: dict) -> None:
    """Write ``path``.safetensors and ``path``.json; the JSON is written last and marks completion."""
    tensors = {f"model.{k}": v.detach().contiguous() for k, v in model.state_dict().items()}
    opt = optimizer.state_dict()
    scalars: dict[str, dict] = {}
    for idx, state in opt["state"].items():
        for key, value in state.items():
            if torch.is_tensor(value) and value.dim() > 0:
                tensors[f"opt.{idx}.{key}"] = value.contiguous()
            else:
                scalars.setdefault(str(idx), {})[key] = float(value)
    weights = path.with_suffix(".safetensors")
    save_file(tensors, str(weights.with_suffix(".tmp")))
    os.replace(weights.with_suffix(".tmp"), weights)
    meta = {**meta, "optimizer_param_groups": opt["param_groups"], "optimizer_scalars": scalars}
    _atomic_write_text(path.with_suffix(".json"), json.dumps(meta, indent=1))


def load_checkpoint(path: Path, model: torch.nn.Module, optimizer: torch.optim.Optimizer) -> dict | None:
    """Restore model and optimizer from ``path``; returns the saved meta, or None when there is none."""
    meta_file, weights = path.with_suffix(".json"), path.with_suffix(".safetensors")
    if not (meta_file.is_file() and weights.is_file()):
        return None
    meta = json.loads(meta_file.read_text())
    tensors = load_file(str(weights))
    model.load_state_dict(_model_tensors(tensors))
    state: dict[int, dict] = {}
    for key, value in tensors.items():
        if key.startswith("opt."):
            _, idx, name = key.split(".", 2)
            state.setdefault(int(idx), {})[name] = value
    for idx, scalars in meta["optimizer_scalars"].items():
        for name, value in scalars.items():
            state.setdefault(int(idx), {})[name] = torch.tensor(value)
    optimizer.load_state_dict({"state": state, "param_groups": meta["optimizer_param_groups"]})
    return meta



def read_finished_run(path: Path, planned_epochs_key: str) -> tuple[dict, dict[str, torch.Tensor]]:
    """Meta and model tensors of a *finished* run at ``path`` (its epoch reached recipe[planned_epochs_key]).

    Raises FileNotFoundError, saying what to run, when the run is missing or unfinished.
    """
    meta_file, weights = path.with_suffix(".json"), path.with_suffix(".safetensors")
    if not (meta_file.is_file() and weights.is_file()):
        raise FileNotFoundError(f"no training run at {path}: run `apudae train` for it first")
    meta = json.loads(meta_file.read_text())
    planned = meta["recipe"][planned_epochs_key]
    if meta["epoch"] < planned:
        raise FileNotFoundError(f"{path} has finished {meta['epoch']} of {planned} epochs: resume `apudae train`")
    return meta, _model_tensors(load_file(str(weights)))
