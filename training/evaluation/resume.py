"""Resumable evaluation runs: after every batch the harness saves where it stands in
``<out>/checkpoint.safetensors``, so that a run stopped part way (the adaptive attacks at 200 x 20
take hours on 2 CPU cores, and a lent GPU gives at most 10 minutes per call) continues with
``--resume`` and ends with the numbers an uninterrupted run gives.

Exactness rests on one fact: every random draw of a run comes from the harness's seeded generator (the
attacks' starts and EOT draws, ART's numpy seed) or is keyed by the image content and ``--seed`` (the
purifier's noise), so restoring that generator's state restores the rest of the run.

The checkpoint is one safetensors file, written without pickle (as the training checkpoints): the
state's tensors as tensors, everything else as JSON in its metadata, each tensor's place in the state
marked by ``{"tensor": key}``. One file, replaced atomically, so the two can never disagree.
"""
from __future__ import annotations

import json
import os
from pathlib import Path

import torch
from safetensors import safe_open
from safetensors.torch import save_file

CHECKPOINT = "checkpoint.safetensors"
RESULTS = ("results.json", "results.md")  # what a finished run leaves in its output directory (report.py)
TENSOR = "tensor"  # {"tensor": key} stands for a tensor in the JSON half of a checkpoint


def run_identity(config: dict) -> dict:
    """The settings that decide a run's numbers: all of ``EvaluationConfig.to_dict()`` but where it is written."""
    return {key: value for key, value in config.items() if key != "out"}


def _split(value, tensors: dict[str, torch.Tensor], key: str):
    """``value`` with each tensor moved into ``tensors`` (under its path in the state) and marked in place."""
    if isinstance(value, torch.Tensor):
        tensors[key] = value.detach().cpu().contiguous()
        return {TENSOR: key}
    if isinstance(value, dict):
        return {name: _split(item, tensors, f"{key}/{name}") for name, item in value.items()}
    if isinstance(value, (list, tuple)):
        return [_split(item, tensors, f"{key}/{index}") for index, item in enumerate(value)]
    return value


def _join(value, tensors: dict[str, torch.Tensor]):
    """The inverse of ``_split``."""
    if isinstance(value, dict):
        if value.keys() == {TENSOR}:
            return tensors[value[TENSOR]]
        return {name: _join(item, tensors) for name, item in value.items()}
    if isinstance(value, list):
        return [_join(item, tensors) for item in value]
    return value


def save_progress(out: str | Path, state: dict) -> None:
    """Write ``state`` (tensors, numbers, strings, lists and dicts with string keys) to ``out``/CHECKPOINT
    atomically: a run killed while saving leaves the previous checkpoint whole."""
    path = Path(out) / CHECKPOINT
    path.parent.mkdir(parents=True, exist_ok=True)
    tensors: dict[str, torch.Tensor] = {}
    plain = _split(state, tensors, "state")
    tmp = path.with_suffix(".tmp")
    save_file(tensors, str(tmp), metadata={"state": json.dumps(plain)})
    os.replace(tmp, path)


def load_progress(out: str | Path, config: dict) -> dict | None:
    """The state saved by an unfinished run of ``config`` in ``out``; None when there is none.
    Raises ValueError naming the differing settings when the saved run had other settings."""
    path = Path(out) / CHECKPOINT
    if not path.is_file():
        return None
    with safe_open(str(path), framework="pt") as file:
        tensors = {key: file.get_tensor(key) for key in file.keys()}
        state = _join(json.loads(file.metadata()["state"]), tensors)
    saved, wanted = state["config"], json.loads(json.dumps(run_identity(config)))
    if saved != wanted:
        differing = sorted(key for key in saved.keys() | wanted.keys() if saved.get(key) != wanted.get(key))
        raise ValueError(f"{path} belongs to a run with other settings ({', '.join(differing)}): resume it with "
                         f"the same settings, or start the run over (without --resume, or as a new job)")
    return state


def refuse_overwrite(out: str | Path | None, resume: bool) -> None:
    """Raise ValueError when a run into ``out`` would overwrite an earlier run's output: its results, or,
    unless ``resume``, its unfinished checkpoint. A run continued with ``resume`` must have a checkpoint
    to continue when ``out`` holds results."""
    if out is None:
        return
    out = Path(out)
    results = [name for name in RESULTS if (out / name).exists()]
    unfinished = (out / CHECKPOINT).is_file()
    if results and not (resume and unfinished):
        raise ValueError(f"{out} already holds the results of an earlier run ({', '.join(results)}); "
                         "give another --out, or move them away first")
    if unfinished and not resume:
        raise ValueError(f"{out} holds an unfinished run ({CHECKPOINT}); continue it with --resume, "
                         "or give another --out")


def clear_progress(out: str | Path) -> None:
    """Remove the checkpoint once the run's results are written."""
    (Path(out) / CHECKPOINT).unlink(missing_ok=True)
