"""The benchmark: attack a bundle's classifier (grey-box) or its whole defence (adaptive) and count what
each defence still classifies correctly.

Defences (the paper's columns): "none" (the classifier), "adversarial-training" (the bundle's adversarially
trained classifier, when it has one), "direct" (classifier(DAE(x))), the purification variant under test and the
variants it is compared with (the rows of the paper's Table 3); with ``combined``, also the variant followed by
the adversarially trained classifier (purify, then the robust classifier).
Grey-box adversaries are made once per classifier and shown to every defence built on it; adaptive
attacks that target one defence (BPDA, PGD-EOT, APGD-EOT) are run against each purifying defence.
With two or more adaptive attacks, the ``worst-case`` row counts per defence the images that it
classifies correctly clean and that every one of those attacks (each beta of counter-attack B included)
left correctly classified: AutoAttack's robust accuracy.

With the bundle's detector (models/detector.py; ``Bundle.calibration.detector``), every cell also counts at
each stored false-positive rate the images flagged, those defended with rejection (flagged or classified
correctly) and the accepted ones classified correctly, and keeps their detection scores for the ROC-AUC
(``stats``); the worst-case row then counts, per rate, the images defended with rejection clean and under
every adaptive attack.

For a randomised purifier (F, G) every adaptive adversary is also resubmitted ``config.resubmissions`` times
(purifier seeds seed, seed + 1, ...), as DiffHammer (NeurIPS 2024) counts: the attacker wins if any one
answer is wrong and the image is not flagged (the detector is deterministic). Those rows are named
"<attack> x<N> resubmissions" and the worst-case row uses them.
"""
from __future__ import annotations

import itertools
import time
from collections import defaultdict
from dataclasses import dataclass, field, replace
from typing import Callable

import torch
from torch import nn

from apudae.models.bundle import Bundle, load_bundle
from apudae.models.cuda import make_cuda_reproducible
from apudae.models.dae import reconstruction_error
from apudae.models.detector import Detector
from apudae.models.purification import VARIANTS, PurificationResult, PurifySettings, purify
from apudae.training.attacks import ADAPTIVE, GREY_BOX, Attack, AttackTarget, build_attacks
from apudae.training.attacks.base import quantize_8bit
from apudae.training.data import ImageSet, load_dataset
from apudae.training.evaluation.config import EvaluationConfig, compare_entry
from apudae.training.evaluation.resume import clear_progress, load_progress, run_identity, save_progress
from apudae.training.evaluation.stats import CLEAN, Tally, rejection_counts

GALLERY_SIZE = 8
RANDOMISED = ("F", "G")  # the variants whose answer depends on the purifier's random draws
ADVERSARIAL_TRAINING = "adversarial-training"  # the column of the bundle's adversarially trained classifier
WORST_CASE = "worst-case"  # the row of images correct clean and under every adaptive attack of the run
Progress = Callable[[int, int], None]


@dataclass
class Defence:
    """A column of the tables: a classifier, purified first when ``settings`` is given."""

    name: str
    classifier: nn.Module
    settings: PurifySettings | None = None

    def predict(self, bundle: Bundle, x: torch.Tensor) -> tuple[torch.Tensor, PurificationResult | None]:
        """x: (B, C, H, W) in [0, 1] -> predicted labels (B,) and the purification result (or None)."""
        result = None if self.settings is None else purify(bundle.dae, x, bundle.calibration, self.settings)
        with torch.no_grad():
            preds = self.classifier(x if result is None else result.images).argmax(1)
        return preds, result


@dataclass
class Outcome:
    """One defence on one batch: ``correct`` (B,) bool, per false-positive rate the detector's ``flags``
    (B,) bool, and the images' detection ``scores`` (B floats; both empty without a detector)."""

    correct: torch.Tensor
    flags: dict[float, torch.Tensor]
    scores: list[float] = field(default_factory=list)

    def survival(self) -> dict[float | None, torch.Tensor]:
        """(B,) bool per key: None -> correct; each rate -> defended with rejection (flagged or correct)."""
        return {None: self.correct, **{rate: flagged | self.correct for rate, flagged in self.flags.items()}}


@dataclass
class Artifacts:
    """What the plots need: per attack, the variant's errors before/after purification (first epsilon
    only), and a gallery of the first images."""

    errors: dict = field(default_factory=lambda: defaultdict(lambda: {"before": [], "after": []}))
    gallery: dict = field(default_factory=dict)


def _defences(bundle: Bundle, settings: PurifySettings, compare: tuple[str, ...] = (),
              combined: bool = False) -> list[Defence]:
    """The baselines, then "direct", ``settings.variant`` and ``compare`` in the paper's order (A..G; a
    variant with its own settings, e.g. "A:n=12", right after the plain one, in the given order), each
    purifying defence named by its entry, with ``settings`` and the entry's variant and overrides; with
    ``combined``, last, ``settings.variant`` followed by the adversarially trained classifier
    ("<variant>+adversarial-training"). ValueError when ``combined`` asks for a baseline the bundle lacks."""
    defences = [Defence("none", bundle.classifier)]
    if bundle.adversarial_classifier is not None:
        defences.append(Defence(ADVERSARIAL_TRAINING, bundle.adversarial_classifier))
    entries = {name: compare_entry(name) for name in ("direct", settings.variant, *compare)}
    order = sorted(entries, key=lambda name: (VARIANTS.index(entries[name][0]), bool(entries[name][1])))
    defences += [Defence(name, bundle.classifier, replace(settings, variant=entries[name][0], **entries[name][1]))
                 for name in order]
    if combined:
        if bundle.adversarial_classifier is None:
            raise ValueError(f"bundle {bundle.name!r} has no adversarially trained classifier to put behind the "
                             "purifier; drop combined (--combined)")
        defences.append(Defence(f"{settings.variant}+{ADVERSARIAL_TRAINING}", bundle.adversarial_classifier, settings))
    return defences


def _by_classifier(defences: list[Defence]) -> list[list[Defence]]:
    """``defences`` grouped by the classifier object they end in, in order of first appearance: the defences
    that one adversary made against that classifier serves."""
    groups: dict[int, list[Defence]] = {}
    for defence in defences:
        groups.setdefault(id(defence.classifier), []).append(defence)
    return list(groups.values())


class Evaluation:
    """One run of ``config``; ``run()`` fills ``tally`` and ``artifacts`` and returns the summary dict."""

    def __init__(self, config: EvaluationConfig, data: ImageSet | None = None):
        self.config = config
        self.device = torch.device(config.device)
        make_cuda_reproducible(self.device)
        self.bundle = load_bundle(config.bundle)
        for net in (self.bundle.dae, self.bundle.classifier, self.bundle.adversarial_classifier):
            if net is not None:
                net.to(self.device)
        dataset = config.dataset or self.bundle.meta.get("provenance", {}).get("dataset")
        self.data = data if data is not None else load_dataset(dataset, "test", config.data_dir,
                                                                  preprocessing=self.bundle.preprocessing)
        overrides = {**config.purify, "variant": config.variant, "seed": config.seed}
        self.settings = PurifySettings.from_defaults(self.bundle.purification_for(config.budget), **overrides)
        self.defences = _defences(self.bundle, self.settings, config.compare, config.combined)
        self.generator = torch.Generator().manual_seed(config.seed)
        self.tally, self.artifacts = Tally(), Artifacts()
        self.detector: Detector | None = self.bundle.calibration.detector
        self._subset = torch.zeros(0, dtype=torch.bool)  # the batch's images the bare classifier gets right
        self.attack_settings: dict[str, dict] = {}
        self._progress: Progress | None = None
        self._step_units, self._done, self._total = False, 0, 0

    def rows(self) -> torch.Tensor:
        """Indices of the evaluated test images: a seeded random subset (all of them when samples is None)."""
        n = len(self.data)
        order = torch.randperm(n, generator=torch.Generator().manual_seed(self.config.seed))
        return order[: min(self.config.samples or n, n)]

    def attacks(self) -> dict[float, list[Attack]]:
        """The attacks of the run, per epsilon."""
        cfg = self.config
        return {epsilon: [a for name in cfg.attacks for a in build_attacks(
            name, epsilon, cfg.adaptive_steps, cfg.adaptive_eot, cfg.reduced_reason, cfg.attack_alpha)]
            for epsilon in cfg.epsilons}

    def _adaptive_steps(self, attack: Attack) -> int:
        """The attack steps one image costs ``attack`` in a batch: its steps times the defences it targets one
        by one (or, for an attack not aimed at one purifier, the classifiers behind them); 0 for a grey-box attack."""
        if attack.threat_model != ADAPTIVE:
            return 0
        purifying = [d for d in self.defences if d.settings is not None]
        groups = len(purifying) if attack.attacks_defence else len(_by_classifier(purifying))
        return int(getattr(attack, "steps", 1)) * groups

    def plan(self) -> dict:
        """What the run will do, before it starts: images, epsilons, defences, each attack's settings, and
        the unit of its progress with the total of them. The unit is "image" (each image counted once per
        epsilon, after its batch), or "attack step" when the run has adaptive attacks: an image through one
        step of one adaptive attack against one defence, counted after each attack (the grey-box attacks
        are quick next to them)."""
        attacks = self.attacks()
        images = len(self.rows())
        steps = sum(self._adaptive_steps(a) for built in attacks.values() for a in built)
        return {"bundle": self.bundle.name, "dataset": self.bundle.meta.get("provenance", {}).get("dataset"),
                "images": images, "epsilons": list(self.config.epsilons), "batch_size": self.config.batch_size,
                "device": str(self.device), "purification": {**vars(self.settings), "scale": list(self.settings.scale)},
                "defences": [d.name for d in self.defences],
                "attacks": {a.name: a.settings() for built in attacks.values() for a in built},
                "detector_rates": list(self.detector.rates) if self.detector else None,
                "unit": "attack step" if steps else "image",
                "total": images * steps if steps else images * len(self.config.epsilons)}

    def _units(self, attacks: list[Attack], images: int) -> int:
        """The progress units of one batch of ``images`` under ``attacks`` (see ``plan``)."""
        steps = sum(self._adaptive_steps(a) for a in attacks)
        return images * steps if self._step_units else images

    def run(self, progress: Progress | None = None, resume: bool = False) -> dict:
        """Every (epsilon, batch) in turn; with ``config.out`` set, the state after each batch is saved there
        and ``resume`` continues a run from it (``training.evaluation.resume``). ``progress(done, total)``
        counts the units of ``plan()``: at the start, and after each batch (after each adaptive attack, in
        attack steps)."""
        cfg = self.config
        batches = list(self.rows().split(cfg.batch_size))
        attacks = self.attacks()
        for built in attacks.values():
            self.attack_settings.update({a.name: a.settings() for a in built})
        self._step_units = any(self._adaptive_steps(a) for built in attacks.values() for a in built)
        steps = [(epsilon, rows) for epsilon in cfg.epsilons for rows in batches]
        ends = list(itertools.accumulate(self._units(attacks[epsilon], len(rows)) for epsilon, rows in steps))
        self._progress, self._total = progress, ends[-1] if ends else 0
        saved = load_progress(cfg.out, cfg.to_dict()) if resume and cfg.out else None
        done, earlier_seconds = self._restore(saved) if saved else (0, 0.0)
        start = time.perf_counter() - earlier_seconds
        self._done = ends[done - 1] if done else 0
        self._report(0)
        for epsilon, rows in steps[done:]:
            x = self.data.images[rows].to(self.device).float() / 255
            self._batch(epsilon, attacks[epsilon], x, self.data.labels[rows].to(self.device))
            done += 1
            if cfg.out:
                self._save(done, time.perf_counter() - start)
            self._done = ends[done - 1]
            if not self._step_units:  # attack steps were reported as each attack finished
                self._report(0)
        return {"config": cfg.to_dict(), "bundle": self.bundle.name, "dataset": self.bundle.meta.get("provenance"),
                "purification": {**vars(self.settings), "scale": list(self.settings.scale)},
                "defences": [d.name for d in self.defences], "attacks": self.attack_settings,
                "detector": self.detector.to_dict() if self.detector else None,
                "samples": int(min(cfg.samples or len(self.data), len(self.data))),
                "wall_seconds": time.perf_counter() - start, "cells": self.tally.to_list()}

    def _report(self, units: int) -> None:
        """Add ``units`` of work done and tell the progress callback."""
        self._done += units
        if self._progress is not None:
            self._progress(self._done, self._total)

    def _save(self, done: int, seconds: float) -> None:
        save_progress(self.config.out, {
            "config": run_identity(self.config.to_dict()), "done": done, "seconds": seconds,
            "generator": self.generator.get_state(), "cells": self.tally.state(),
            "errors": dict(self.artifacts.errors), "gallery": self.artifacts.gallery,
            "detector": self.detector.to_dict() if self.detector else None})

    def _restore(self, state: dict) -> tuple[int, float]:
        """Take up a saved run: returns the (epsilon, batch) steps it had done and the seconds they took.
        The run keeps the detector it started with (none, for a checkpoint written before the detector),
        so that every batch's rejection counts use the same thresholds."""
        saved = state.get("detector")
        self.detector = Detector.from_dict(saved) if saved else None
        self.generator.set_state(state["generator"])
        self.tally.restore(state["cells"])
        self.artifacts.errors.update(state["errors"])
        self.artifacts.gallery.update(state["gallery"])
        return state["done"], state["seconds"]

    def _batch(self, epsilon: float, attacks: list[Attack], x: torch.Tensor, y: torch.Tensor) -> None:
        with torch.no_grad():  # (B,) bool: the images of the paper's protocol, right under no defence
            self._subset = self.bundle.classifier(x).argmax(1) == y
        clean = self._score(epsilon, CLEAN, GREY_BOX, self.defences, x, y, 0.0)
        purifying = [d for d in self.defences if d.settings is not None]
        # purifying defence -> Outcome.survival() keys -> (B,) bool: defended clean and, so far, under every
        # adaptive attack (correct; and per rate, flagged or correct)
        survivors = {d.name: clean[d.name].survival() for d in purifying}
        for attack in attacks:
            if attack.threat_model == GREY_BOX:
                for users in _by_classifier(self.defences):
                    target = AttackTarget(users[0].classifier, generator=self.generator)
                    self._attack(epsilon, attack, target, users, x, y)
                continue
            # one adversary per defence for the attacks through the purification loop, else one per classifier
            groups = [[d] for d in purifying] if attack.attacks_defence else _by_classifier(purifying)
            for group in groups:
                target = AttackTarget(group[0].classifier, self.bundle.dae, self.bundle.calibration,
                                      group[0].settings, self.generator)
                for name, outcome in self._attack(epsilon, attack, target, group, x, y).items():
                    survivors[name] = {key: alive & outcome.survival()[key] for key, alive in survivors[name].items()}
        if sum(attack.threat_model == ADAPTIVE for attack in attacks) > 1:
            for name, alive in survivors.items():
                correct = alive[None]
                self.tally.add(epsilon, name, WORST_CASE, ADAPTIVE, int(correct.sum()), len(correct),
                               subset=self._on_subset(correct),
                               rejection={f"{rate:g}": {"defended": int(kept.sum())}
                                          for rate, kept in alive.items() if rate is not None})

    def _attack(self, epsilon: float, attack: Attack, target: AttackTarget, defences: list[Defence],
                x: torch.Tensor, y: torch.Tensor) -> dict[str, Outcome]:
        """Attack x, score ``defences`` on the adversaries; returns each defence's outcome (over every
        resubmission, for a randomised defence under an adaptive attack)."""
        began = time.perf_counter()
        adv = attack.generate(target, x, y)
        seconds = time.perf_counter() - began
        if self._step_units and attack.threat_model == ADAPTIVE:
            self._report(len(x) * int(getattr(attack, "steps", 1)))
        if self.config.quantize:
            adv = quantize_8bit(adv)
        outcomes = self._score(epsilon, attack.name, attack.threat_model, defences, adv, y, seconds)
        if attack.threat_model == ADAPTIVE:
            outcomes.update(self._resubmit(epsilon, attack.name, defences, adv, y, outcomes))
        return outcomes

    def _resubmit(self, epsilon: float, attack: str, defences: list[Defence], adv: torch.Tensor, y: torch.Tensor,
                  outcomes: dict[str, Outcome]) -> dict[str, Outcome]:
        """The randomised ``defences`` on ``config.resubmissions`` submissions of ``adv`` (the first is the
        one ``outcomes`` scored): an image stays correct only if every answer is right. Tallies and returns
        their outcomes; none when resubmissions < 2."""
        n = self.config.resubmissions
        randomised = [d for d in defences if d.settings is not None and d.settings.variant in RANDOMISED
                      and (d.settings.gamma > 0 or d.settings.variant == "G")]
        if n < 2 or not randomised:
            return {}
        out = {}
        for defence in randomised:
            first = outcomes[defence.name]
            correct = first.correct.clone()
            for k in range(1, n):
                again = replace(defence, settings=replace(defence.settings, seed=defence.settings.seed + k))
                correct &= again.predict(self.bundle, adv)[0] == y
            out[defence.name] = Outcome(correct, first.flags, first.scores)
            self.tally.add(epsilon, defence.name, f"{attack} x{n} resubmissions", ADAPTIVE, int(correct.sum()),
                           len(y), subset=self._on_subset(correct),
                           rejection=rejection_counts(correct, first.flags), scores=first.scores)
        return out

    def _on_subset(self, correct: torch.Tensor) -> tuple[int, int]:
        """(correct, total) of ``correct`` (B,) bool on the batch's images the bare classifier gets right."""
        return int((correct & self._subset).sum()), int(self._subset.sum())

    def _detect(self, x: torch.Tensor) -> tuple[list[float], dict[float, torch.Tensor]]:
        """The detector on x (B, C, H, W): each image's score (eq. 7's error, one DAE pass) and per stored
        rate its flags (B,) bool; ([], {}) without a detector."""
        if self.detector is None:
            return [], {}
        with torch.no_grad():
            errors = reconstruction_error(self.bundle.dae, x)
        return errors.tolist(), {rate: self.detector.flags(errors, rate) for rate in self.detector.rates}

    def _score(self, epsilon: float, attack: str, threat_model: str, defences: list[Defence],
               x: torch.Tensor, y: torch.Tensor, attack_seconds: float) -> dict[str, Outcome]:
        """Count each defence's correct predictions on x and, with a detector, its flags (one DAE pass on x,
        the same for every defence); returns each defence's outcome."""
        scores, flags = self._detect(x)
        outcomes = {}
        for defence in defences:
            began = time.perf_counter()
            preds, result = defence.predict(self.bundle, x)
            seconds = time.perf_counter() - began
            correct = preds == y
            outcomes[defence.name] = Outcome(correct, flags, scores)
            steps = None if result is None else int(result.steps.sum())
            self.tally.add(epsilon, defence.name, attack, threat_model, int(correct.sum()), len(y),
                           attack_seconds, seconds, steps,
                           self._on_subset(correct), rejection_counts(correct, flags), scores)
            if defence.name == self.settings.variant != "direct" and epsilon == self.config.epsilons[0]:
                self._keep(attack, x, preds, result, defence.name)
        return outcomes

    def _keep(self, attack: str, x: torch.Tensor, preds: torch.Tensor, result: PurificationResult,
              defence: str) -> None:
        errors = self.artifacts.errors[attack]
        errors["before"].extend(result.error_before.tolist())
        errors["after"].extend(result.error_after.tolist())
        if attack not in self.artifacts.gallery:
            k = min(GALLERY_SIZE, len(x))
            with torch.no_grad():
                images = {"input": x[:k], "direct": self.bundle.dae(x[:k]), "purified": result.images[:k]}
                self.artifacts.gallery[attack] = {
                    "defence": defence,
                    "images": {name: img.detach().cpu() for name, img in images.items()},
                    "preds": {name: self.bundle.classifier(img).argmax(1).cpu() for name, img in images.items()}}


def run_evaluation(config: EvaluationConfig, progress_callback: Progress | None = None,
                   data: ImageSet | None = None, resume: bool = False,
                   announce: Callable[[dict], None] | None = None) -> dict:
    """Run ``config`` and return its JSON-ready summary (``cells``: one dict per (epsilon, defence, attack)
    with correct, total, accuracy, ci95, seconds per image, purification steps per image, threat_model).
    When ``config.out`` is set, also writes results.json, results.md and the plots there (paths under ``files``),
    and a checkpoint after every batch that ``resume`` continues from (removed once the results are written).
    ``announce(plan)`` is called once the bundle and data are loaded, before any work (``Evaluation.plan``);
    ``progress_callback(done, total)`` counts the plan's units; ``data`` replaces the test split."""
    evaluation = Evaluation(config, data)
    if announce is not None:
        announce(evaluation.plan())
    summary = evaluation.run(progress_callback, resume)
    if config.out:
        from apudae.training.evaluation.report import write_outputs

        summary["files"] = write_outputs(summary, evaluation.artifacts, config.out, evaluation.bundle.classes)
        clear_progress(config.out)
    return summary
