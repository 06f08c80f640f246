"""Training loops for the classifiers (clean and adversarial: PGD or fast FGSM) and the DAE (eq. 5).

Each loop is resumable: after every epoch it writes a checkpoint (safetensors + JSON)
in the work directory and, when started again, continues from the last finished
epoch. Randomness is drawn from generators seeded by (seed, epoch), so a resumed
run equals an uninterrupted one.
"""
from __future__ import annotations

import json
import math
import time
from contextlib import nullcontext
from pathlib import Path

import torch
import torch.nn.functional as F
from tqdm import tqdm

from apudae.models.classifiers import ClassifierConfig, ImageClassifier
from apudae.models.cpu import cpu_computes_bf16
from apudae.models.dae import DAEConfig, DenoisingAutoEncoder, add_training_noise, reconstruction_error
from apudae.training.attacks.pgd import pgd_linf
from apudae.training.augment import random_crop, random_flip
from apudae.training.checkpoint import load_checkpoint, read_finished_run, save_checkpoint
from apudae.training.data import ImageSet
from apudae.training.recipes import ADVERSARIAL_METHODS, Recipe

PARTS = ("classifier", "dae", "adversarial")
EPOCHS_KEY = {"classifier": "classifier_epochs", "dae": "dae_epochs", "adversarial": "adversarial_epochs"}


def one_cycle_lr(step: int, total: int, peak: float, warmup: float = 0.2) -> float:
    """Linear warm-up to ``peak`` over the first ``warmup`` share of steps, then linear decay to 0."""
    rise = max(1, int(total * warmup))
    return peak * step / rise if step < rise else peak * max(0.0, (total - step) / max(1, total - rise))


@torch.no_grad()
def accuracy(model: torch.nn.Module, data: ImageSet, batch_size: int = 500) -> float:
    """Top-1 accuracy of ``model`` (eval mode) on ``data``; every image counts, the last partial batch too."""
    model.eval()
    correct = 0
    for start in range(0, len(data), batch_size):
        x = data.images[start:start + batch_size].float() / 255
        correct += (model(x).argmax(1) == data.labels[start:start + batch_size]).sum().item()
    return correct / len(data)


@torch.no_grad()
def per_image_errors(dae: torch.nn.Module, data: ImageSet, batch_size: int = 500) -> torch.Tensor:
    """``reconstruction_error`` (eq. 7) of every image of ``data`` under ``dae`` (eval mode), in batches of
    ``batch_size``: (N,) float32."""
    dae.eval()
    chunks = [reconstruction_error(dae, data.images[i:i + batch_size].float() / 255)
              for i in range(0, len(data), batch_size)]
    return torch.cat(chunks)


def robust_accuracy(model: torch.nn.Module, data: ImageSet, epsilon: float, steps: int = 10, count: int = 500,
                    batch_size: int = 250) -> float:
    """Top-1 accuracy of ``model`` (eval mode) under PGD (``steps`` steps of epsilon/4 from a random start, seed 0)
    on the first ``count`` images of ``data``: the per-epoch check that shows catastrophic overfitting of fast
    adversarial training (robust accuracy falling to ~0 within an epoch, Wong et al. 2020)."""
    model.eval()
    generator = torch.Generator().manual_seed(0)
    correct, total = 0, min(count, len(data))
    for start in range(0, total, batch_size):
        x = data.images[start:min(start + batch_size, total)].float() / 255
        y = data.labels[start:start + len(x)]
        adv = pgd_linf(model, x, y, epsilon, epsilon / 4, steps, generator=generator)
        with torch.no_grad():
            correct += (model(adv).argmax(1) == y).sum().item()
    return correct / total


def adversarial_batch(model: torch.nn.Module, x: torch.Tensor, y: torch.Tensor, recipe: Recipe,
                      generator: torch.Generator) -> torch.Tensor:
    """The attacked training batch of the adversarial baseline: x (B, C, H, W) in [0, 1] -> same shape, within
    ``recipe.adversarial_epsilon`` of x (l_inf), by ``recipe.adversarial_method`` (see Recipe)."""
    eps = recipe.adversarial_epsilon
    if recipe.adversarial_method == "fgsm-rs":
        return pgd_linf(model, x, y, eps, 1.25 * eps, 1, generator=generator)
    if recipe.adversarial_method == "pgd":
        return pgd_linf(model, x, y, eps, 2.5 * eps / recipe.adversarial_steps, recipe.adversarial_steps,
                        generator=generator)
    raise ValueError(f"unknown adversarial_method {recipe.adversarial_method!r}; choose one of {ADVERSARIAL_METHODS}")


def _build(part: str, recipe_dict: dict) -> torch.nn.Module:
    if part == "dae":
        return DenoisingAutoEncoder(DAEConfig(**recipe_dict["dae"]))
    return ImageClassifier(ClassifierConfig.from_dict(recipe_dict["classifier"]))


def load_trained(workdir: Path, part: str) -> tuple[torch.nn.Module, dict]:
    """The finished ``part`` of ``workdir`` in eval mode, rebuilt from the recipe saved with it, and its meta."""
    meta, weights = read_finished_run(workdir / part, EPOCHS_KEY[part])
    model = _build(part, meta["recipe"])
    model.load_state_dict(weights)
    return model.eval(), meta


def make_optimizer(part: str, model: torch.nn.Module, recipe: dict) -> torch.optim.Optimizer:
    """The optimizer of ``part``: Adam for the DAE, SGD with Nesterov momentum 0.9 and weight decay for the
    classifiers; learning rates from the recipe (a ``Recipe.to_dict()``), then set per step by the schedule."""
    if part == "dae":
        return torch.optim.Adam(model.parameters(), lr=recipe["dae_lr"])
    return torch.optim.SGD(model.parameters(), lr=recipe["classifier_lr"], momentum=0.9, nesterov=True,
                           weight_decay=recipe["weight_decay"])


def _augment(recipe: Recipe, part: str, images: torch.Tensor, generator: torch.Generator) -> torch.Tensor:
    """uint8 (B, C, H, W) -> float [0, 1]: random crop, flip, and for the plain classifier the recipe's noise."""
    images = random_crop(images, recipe.crop_padding, generator)
    if recipe.flip:
        images = random_flip(images, generator)
    images = images.float() / 255
    if part == "classifier" and recipe.classifier_noise_max > 0:
        images = add_training_noise(images, recipe.classifier_noise_max, generator).clamp(0, 1)
    return images


def extra_batch_size(main: torch.Tensor, extra: ImageSet, main_batch: int) -> int:
    """Images of ``extra`` per DAE batch that hold as many pixels as ``main_batch`` images of ``main``'s size
    (``recipe.dae_extra_dataset``): 16 images at 224x224 -> 784 at 32x32."""
    return max(1, round(main_batch * main.shape[-2] * main.shape[-1] / (extra.images.shape[-2] * extra.images.shape[-1])))


def _dae_step(model: torch.nn.Module, optimizer: torch.optim.Optimizer, images: torch.Tensor, sigma_max: float,
              generator: torch.Generator, autocast) -> float:
    """One step of eq. 5 on uint8 ``images`` (B, c, H, W): MSE between DAE(X + noise) and X; returns the loss."""
    clean = images.float() / 255
    with autocast:
        denoised = model(add_training_noise(clean, sigma_max, generator))
    loss = F.mse_loss(denoised.float(), clean)
    optimizer.zero_grad(set_to_none=True)
    loss.backward()
    optimizer.step()
    return loss.item()


def train_part(part: str, recipe: Recipe, train: ImageSet, val: ImageSet, workdir: Path, seed: int,
               extra: ImageSet | None = None) -> dict:
    """Train ``part`` ("classifier", "dae" or "adversarial") to completion; returns the final meta.

    ``extra``: the DAE's second data set (``recipe.dae_extra_dataset``), one batch of it after each batch of
    ``train``; its loss is logged as ``extra_train_loss``. Writes ``workdir/<part>.safetensors`` and
    ``workdir/<part>.json`` after every epoch and a line of per-epoch metrics to ``workdir/<part>.log.jsonl``.
    """
    if part not in PARTS:
        raise ValueError(f"unknown part {part!r}; choose one of {PARTS}")
    workdir.mkdir(parents=True, exist_ok=True)
    is_dae = part == "dae"
    torch.manual_seed(seed)
    model = _build(part, recipe.to_dict())
    optimizer = make_optimizer(part, model, recipe.to_dict())
    batch, peak = (recipe.dae_batch, recipe.dae_lr) if is_dae else (recipe.classifier_batch, recipe.classifier_lr)
    epochs = getattr(recipe, EPOCHS_KEY[part])
    ckpt = workdir / part
    meta = load_checkpoint(ckpt, model, optimizer) or {"epoch": 0, "history": [], "wall_seconds": 0.0}
    if meta["epoch"] >= epochs:
        return meta
    steps_per_epoch = math.ceil(len(train) / batch)
    total_steps = epochs * steps_per_epoch
    # the recipe asks for bf16 where it pays: on a CPU that emulates bf16 autocast is slower than fp32
    use_bf16 = (recipe.dae_bf16 if is_dae else recipe.bf16) and cpu_computes_bf16()
    autocast = torch.autocast("cpu", dtype=torch.bfloat16) if use_bf16 else nullcontext()
    for epoch in range(meta["epoch"], epochs):
        started = time.time()
        generator = torch.Generator().manual_seed(seed * 1000 + epoch)
        torch.manual_seed(seed * 1000 + epoch)
        order = torch.randperm(len(train), generator=generator)
        if extra is not None:
            per_batch = extra_batch_size(train.images, extra, batch)
            extra_order = torch.randperm(len(extra), generator=generator).repeat(
                math.ceil(steps_per_epoch * per_batch / len(extra)))
        model.train()
        running, seen, extra_running = 0.0, 0, 0.0
        bar = tqdm(range(steps_per_epoch), desc=f"{recipe.dataset} {part} {epoch + 1}/{epochs}", mininterval=10)
        for i in bar:
            index = order[i * batch:(i + 1) * batch]
            step = epoch * steps_per_epoch + i
            for group in optimizer.param_groups:
                group["lr"] = (peak * 0.5 * (1 + math.cos(math.pi * step / total_steps)) if is_dae
                               else one_cycle_lr(step, total_steps, peak))
            if is_dae:
                loss = _dae_step(model, optimizer, train.images[index], recipe.dae.sigma_max, generator, autocast)
                if extra is not None:
                    extra_index = extra_order[i * per_batch:(i + 1) * per_batch]
                    extra_running += _dae_step(model, optimizer, extra.images[extra_index], recipe.dae.sigma_max,
                                               generator, autocast)
            else:
                x, y = _augment(recipe, part, train.images[index], generator), train.labels[index]
                if part == "adversarial":
                    with autocast:
                        x = adversarial_batch(model, x, y, recipe, generator)
                with autocast:
                    loss = F.cross_entropy(model(x).float(), y, label_smoothing=recipe.label_smoothing)
                optimizer.zero_grad(set_to_none=True)
                loss.backward()
                optimizer.step()
                loss = loss.item()
            running += loss * len(index)
            seen += len(index)
            bar.set_postfix(loss=f"{running / seen:.4f}", refresh=False)
        record = {"epoch": epoch + 1, "train_loss": running / seen, "seconds": time.time() - started,
                  "bf16": bool(use_bf16)}
        if extra is not None:
            record["extra_train_loss"] = extra_running / steps_per_epoch
        if is_dae:
            record["val_clean_reconstruction_error"] = per_image_errors(model, val).mean().item()
            record["sigma_max"] = recipe.dae.sigma_max  # a resumed run may train on with another noise range
        else:
            record["val_accuracy"] = accuracy(model, val)
            if part == "adversarial":
                record["val_pgd_accuracy"] = robust_accuracy(model, val, recipe.adversarial_epsilon)
            if part == "classifier":  # a resumed run may train on with another noise range
                record["noise_max"] = recipe.classifier_noise_max
        meta = {"epoch": epoch + 1, "history": meta["history"] + [record],
                "wall_seconds": meta["wall_seconds"] + record["seconds"], "seed": seed,
                "recipe": recipe.to_dict(), "part": part}
        save_checkpoint(ckpt, model, optimizer, meta)
        with open(workdir / f"{part}.log.jsonl", "a") as log:
            log.write(json.dumps(record) + "\n")
        print(json.dumps({"part": part, **record}), flush=True)
    return meta
