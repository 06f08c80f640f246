"""Resumable evaluation runs: after every batch the harness saves where it stands in ``<out>/checkpoint.pt``,
so that a run stopped part way (the adaptive attacks at 200 x 20 take hours on 2 CPU cores, and a lent
GPU gives at most 10 minutes per call) continues with ``--resume`` and ends with the numbers an
uninterrupted run gives.

Exactness rests on one fact: every random draw of a run comes from the harness's seeded generator (the
attacks' starts and EOT draws, ART's numpy seed) or is keyed by the image content and ``--seed`` (the
purifier's noise), so restoring that generator's state restores the rest of the run.

The file holds only tensors and plain containers and is read with ``torch.load(weights_only=True)``, which
refuses anything else (no pickled code).
"""
from __future__ import annotations

import os
from pathlib import Path

import torch

CHECKPOINT = "checkpoint.pt"


def run_identity(config: dict) -> dict:
    """The settings that decide a run's numbers: all of ``EvaluationConfig.to_dict()`` but where it is written."""
    return {key: value for key, value in config.items() if key != "out"}


def save_progress(out: str | Path, state: dict) -> None:
    """Write ``state`` (tensors, numbers, strings, lists, dicts) to ``out``/checkpoint.pt atomically: a run
    killed while saving leaves the previous checkpoint whole."""
    path = Path(out) / CHECKPOINT
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_suffix(".tmp")
    torch.save(state, tmp)
    os.replace(tmp, path)


def load_progress(out: str | Path, config: dict) -> dict | None:
    """The state saved by an unfinished run of ``config`` in ``out``; None when there is none.
    Raises ValueError naming the differing settings when the saved run had other settings."""
    path = Path(out) / CHECKPOINT
    if not path.is_file():
        return None
    state = torch.load(path, weights_only=True)
    saved, wanted = state["config"], run_identity(config)
    if saved != wanted:
        differing = sorted(key for key in saved.keys() | wanted.keys() if saved.get(key) != wanted.get(key))
        raise ValueError(f"{path} belongs to a run with other settings ({', '.join(differing)}): resume it with "
                         f"the same settings, or run without --resume to start over")
    return state


def clear_progress(out: str | Path) -> None:
    """Remove the checkpoint once the run's results are written."""
    (Path(out) / CHECKPOINT).unlink(missing_ok=True)
