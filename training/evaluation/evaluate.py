"""`apudae evaluate`: run the attack benchmarks on a bundle and write JSON, markdown and plots.

Before the first batch it prints the chosen settings and the planned work; the progress bar counts images
(attack steps when the run has adaptive attacks) with an ETA, and once the first unit of work is timed it
prints an estimate of the whole run. It never overwrites an earlier run's results in --out: it refuses,
unless --resume continues that run's unfinished checkpoint. Errors end in one line and exit code 2.
"""
from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

import torch
from tqdm import tqdm

from apudae.models.bundle import BundleError
from apudae.models.purification import STEP_RULES, VARIANTS
from apudae.training.attacks import ATTACKS
from apudae.training.data import DataNotFoundError
from apudae.training.evaluation.config import DEFAULT_ATTACKS, EvaluationConfig
from apudae.training.evaluation.harness import run_evaluation
from apudae.training.evaluation.resume import load_progress, refuse_overwrite


class _DefaultsHelp(argparse.ArgumentDefaultsHelpFormatter):
    """argparse's "(default: X)" after each option's help, except where the help already says its default
    in words (the None defaults) and for required options."""

    def _get_help_string(self, action: argparse.Action) -> str | None:
        if action.required or "(default" in (action.help or ""):
            return action.help
        return super()._get_help_string(action)


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.formatter_class = _DefaultsHelp  # --help shows every default
    parser.add_argument("--bundle", required=True, help="bundle directory, e.g. models/mnist")
    parser.add_argument("--variant", choices=VARIANTS, help="purification variant (default: the bundle's)")
    parser.add_argument("--compare", default="",
                        help="comma-separated further variants, evaluated on the same adversaries (paper Table 3); "
                             "one may carry its own settings: A:n=12 (n, alpha, beta, gamma) (default: none)")
    parser.add_argument("--combined", action="store_true",
                        help="also evaluate the variant followed by the bundle's adversarially trained classifier "
                             "(purify, then the robust classifier; column <variant>+adversarial-training)")
    parser.add_argument("--attacks", default=",".join(DEFAULT_ATTACKS),
                        help=f"comma-separated, from: {', '.join(ATTACKS)}")
    parser.add_argument("--epsilon", type=float, nargs="+", default=[0.1],
                        help="l_inf budget(s) in [0, 1] pixel units; several give accuracy against epsilon")
    parser.add_argument("--samples", type=int, default=1000, help="test images (seeded random subset); 0 = all")
    parser.add_argument("--seed", type=int, default=0, help="subset, attack and purification randomness")
    parser.add_argument("--batch-size", type=int, default=250, help="images per batch")
    parser.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu",
                        help="torch device (cuda when present, else cpu)")
    parser.add_argument("--no-quantize", dest="quantize", action="store_false",
                        help="do not round adversarial images to 8 bits before the defence sees them (default: round)")
    parser.add_argument("--threads", type=int, help="torch CPU threads, 1 while training runs beside it "
                        "(default: torch's, one per core)")
    for name, kind in (("n", int), ("alpha", float), ("beta", float), ("gamma", float)):
        parser.add_argument(f"--{name}", type=kind, help=f"purification {name} (default: the bundle's)")
    parser.add_argument("--budget", type=float,
                        help="start from the bundle's purification settings tuned for this attack budget (one of its "
                             "purification_budgets), as a request's budget= does; --n etc. override them "
                             "(default: the bundle's purification defaults)")
    parser.add_argument("--step", choices=STEP_RULES, help="purification step rule (default: the bundle's, else sign)")
    parser.add_argument("--carry", action=argparse.BooleanOptionalAction, default=None,
                        help="keep stepping along the momentum under mu, eq. 9-13 (default: the bundle's)")
    parser.add_argument("--adaptive-steps", type=int,
                        help="steps of PGD-EOT/BPDA and APGD (default: 200 and 100)")
    parser.add_argument("--adaptive-eot", type=int, help="EOT draws per gradient (default: 20)")
    parser.add_argument("--reduced-reason", default="",
                        help="why the adaptive settings were lowered (required when they are; recorded) (default: none)")
    parser.add_argument("--attack-alpha", type=float,
                        help="step of bim, pgd, counter-a and counter-b in [0, 1] pixel units; their steps follow "
                             "(eq. 3: floor(2 eps / alpha + 2)); the paper's Table 4 uses 1/255 = 0.0039216 "
                             "(default: eps / 10)")
    parser.add_argument("--resubmissions", type=int, default=10,
                        help="times each adaptive adversary is sent to a randomised purifier (F, G); it counts as "
                             "defended only if every answer is right or it is flagged (DiffHammer); 1 = once")
    parser.add_argument("--data-dir", help="data directory (default: $APUDAE_DATA_DIR, else ./data)")
    parser.add_argument("--out", default="results/evaluate", help="output directory for results.json/.md and "
                        "plots; refused when it holds an earlier run's results or checkpoint, unless --resume")
    parser.add_argument("--resume", action="store_true",
                        help="continue the unfinished run in --out from its last batch (the same settings) (default: start a new "
                             "run)")


def _names(comma_separated: str) -> tuple[str, ...]:
    return tuple(name.strip() for name in comma_separated.split(",") if name.strip())


def config_from_args(args: argparse.Namespace) -> EvaluationConfig:
    purify = {k: getattr(args, k) for k in ("n", "alpha", "beta", "gamma", "step", "carry")
              if getattr(args, k) is not None}
    return EvaluationConfig(
        bundle=args.bundle, variant=args.variant, budget=args.budget, purify=purify, compare=_names(args.compare),
        combined=args.combined, attacks=_names(args.attacks), epsilons=tuple(args.epsilon),
        samples=args.samples or None, seed=args.seed, batch_size=args.batch_size, device=args.device,
        quantize=args.quantize, adaptive_steps=args.adaptive_steps, adaptive_eot=args.adaptive_eot,
        reduced_reason=args.reduced_reason, attack_alpha=args.attack_alpha,
        resubmissions=args.resubmissions, data_dir=args.data_dir, out=args.out)


def _duration(seconds: float) -> str:
    """``seconds`` as "1 h 05 min", "12 min 30 s" or "8 s"."""
    seconds = round(seconds)
    hours, rest = divmod(seconds, 3600)
    minutes, secs = divmod(rest, 60)
    if hours:
        return f"{hours} h {minutes:02d} min"
    return f"{minutes} min {secs:02d} s" if minutes else f"{secs} s"


def describe(plan: dict) -> list[str]:
    """The lines printed before a run starts: its settings and its planned work."""
    attacks = ", ".join(name + (f" ({a['steps']} steps x {a['eot']} EOT)" if "eot" in a else "")
                        for name, a in plan["attacks"].items())
    purification = {k: v for k, v in plan["purification"].items() if k != "scale"}
    return [f"evaluate bundle {plan['bundle']} ({plan['dataset']}): {plan['images']} test images x "
            f"{len(plan['epsilons'])} epsilon(s) {plan['epsilons']}, batches of {plan['batch_size']} on {plan['device']}",
            f"defences: {', '.join(plan['defences'])}",
            f"purification: {json.dumps(purification, default=str)}",
            f"attacks: {attacks}",
            "detector: " + (f"with rejection at false-positive rates {plan['detector_rates']}" if plan["detector_rates"]
                            else "none (no thresholds in the bundle: no results with rejection)"),
            f"work: {plan['total']} {plan['unit']}s; a time estimate follows the first batch"]


class ProgressDisplay:
    """The tqdm bar of a run (images or attack steps, with ETA), and a one-time estimate of the whole run
    from the time the first reported work took."""

    def __init__(self, plan: dict):
        self.bar = tqdm(total=plan["total"], unit=plan["unit"], unit_scale=plan["total"] >= 100_000, desc=f"evaluate {plan['bundle']}",
                        smoothing=0.1)
        self.unit, self.first, self.began, self.estimated = plan["unit"], None, time.perf_counter(), False

    def __call__(self, done: int, total: int) -> None:
        if self.first is None:  # a resumed run starts where its checkpoint stood
            self.first, self.began = done, time.perf_counter()
        self.bar.total = total
        self.bar.update(done - self.bar.n)
        if not self.estimated and done > self.first:
            self.estimated = True
            seconds = time.perf_counter() - self.began
            rest = seconds / (done - self.first) * (total - done)
            tqdm.write(f"estimate: about {_duration(seconds + rest)} in all, {_duration(rest)} left "
                       f"(the first {done - self.first} {self.unit}s took {_duration(seconds)})")

    def close(self) -> None:
        self.bar.close()


def fail(message: str) -> int:
    """Print ``message`` as one error line on stderr; the exit code of a usage or input error."""
    print(f"apudae evaluate: error: {message}", file=sys.stderr)
    return 2


def run(args: argparse.Namespace) -> int:
    if args.threads:
        torch.set_num_threads(args.threads)
    try:
        config = config_from_args(args)
        if config.data_dir is not None and not Path(config.data_dir).is_dir():
            raise ValueError(f"data directory {config.data_dir} does not exist; give --data-dir a folder holding "
                             "the data sets (or set APUDAE_DATA_DIR)")
        refuse_overwrite(config.out, args.resume)
        if args.resume:  # a checkpoint of other settings is refused now, before the bundle and data load
            load_progress(config.out, config.to_dict())
    except ValueError as err:
        return fail(str(err))
    displays: list[ProgressDisplay] = []

    def announce(plan: dict) -> None:
        print("\n".join(describe(plan)), flush=True)
        displays.append(ProgressDisplay(plan))

    try:
        summary = run_evaluation(config, lambda done, total: displays[0](done, total), resume=args.resume,
                                 announce=announce)
    except (DataNotFoundError, BundleError, ValueError) as err:
        if displays:  # the run had started: not a bad input but a failure, with its traceback
            raise
        return fail(str(err))
    finally:
        for display in displays:
            display.close()
    print(Path(summary["files"]["markdown"]).read_text())
    print(f"wrote {', '.join(summary['files'].values())}")
    return 0
