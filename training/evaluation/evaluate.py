"""`apudae evaluate`: run the attack benchmarks on a bundle and write JSON, markdown and plots."""
from __future__ import annotations

import argparse
from pathlib import Path

import torch
from tqdm import tqdm

from apudae.models.purification import STEP_RULES, VARIANTS
from apudae.training.attacks import ATTACKS
from apudae.training.evaluation.config import DEFAULT_ATTACKS, EvaluationConfig
from apudae.training.evaluation.harness import run_evaluation
from apudae.training.evaluation.resume import load_progress


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--bundle", required=True, help="bundle directory, e.g. models/mnist")
    parser.add_argument("--variant", choices=VARIANTS, help="purification variant (default: the bundle's)")
    parser.add_argument("--compare", default="",
                        help="comma-separated further variants, evaluated on the same adversaries (paper Table 3); "
                             "one may carry its own settings: A:n=12 (n, alpha, beta, gamma)")
    parser.add_argument("--attacks", default=",".join(DEFAULT_ATTACKS),
                        help=f"comma-separated, from: {', '.join(ATTACKS)}")
    parser.add_argument("--epsilon", type=float, nargs="+", default=[0.1],
                        help="l_inf budget(s) in [0, 1] pixel units; several give accuracy against epsilon")
    parser.add_argument("--samples", type=int, default=1000, help="test images (seeded random subset); 0 = all")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--batch-size", type=int, default=250)
    parser.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    parser.add_argument("--no-quantize", dest="quantize", action="store_false",
                        help="do not round adversarial images to 8 bits before the defence sees them")
    parser.add_argument("--threads", type=int, help="torch CPU threads (1 while training runs beside it)")
    for name, kind in (("n", int), ("alpha", float), ("beta", float), ("gamma", float)):
        parser.add_argument(f"--{name}", type=kind, help=f"purification {name} (default: the bundle's)")
    parser.add_argument("--step", choices=STEP_RULES, help="purification step rule (default: the bundle's or sign)")
    parser.add_argument("--carry", action=argparse.BooleanOptionalAction, default=None,
                        help="keep stepping along the momentum under mu, eq. 9-13 (default: the bundle's)")
    parser.add_argument("--adaptive-steps", type=int, help="steps of PGD-EOT/BPDA (default 200) and APGD (100)")
    parser.add_argument("--adaptive-eot", type=int, help="EOT draws per gradient (default 20)")
    parser.add_argument("--reduced-reason", default="",
                        help="why the adaptive settings were lowered (required when they are; recorded)")
    parser.add_argument("--data-dir", help="data directory (default: APUDAE_DATA_DIR)")
    parser.add_argument("--out", default="results/evaluate", help="output directory for results.json/.md and plots")
    parser.add_argument("--resume", action="store_true",
                        help="continue the unfinished run in --out from its last batch (the same settings); "
                             "without it a run starts over")


def _names(comma_separated: str) -> tuple[str, ...]:
    return tuple(name.strip() for name in comma_separated.split(",") if name.strip())


def config_from_args(args: argparse.Namespace) -> EvaluationConfig:
    purify = {k: getattr(args, k) for k in ("n", "alpha", "beta", "gamma", "step", "carry")
              if getattr(args, k) is not None}
    return EvaluationConfig(
        bundle=args.bundle, variant=args.variant, purify=purify, compare=_names(args.compare),
        attacks=_names(args.attacks), epsilons=tuple(args.epsilon),
        samples=args.samples or None, seed=args.seed, batch_size=args.batch_size, device=args.device,
        quantize=args.quantize, adaptive_steps=args.adaptive_steps, adaptive_eot=args.adaptive_eot,
        reduced_reason=args.reduced_reason, data_dir=args.data_dir, out=args.out)


def run(args: argparse.Namespace) -> int:
    if args.threads:
        torch.set_num_threads(args.threads)
    try:
        config = config_from_args(args)
        if args.resume:  # a checkpoint of other settings is refused now, before the bundle and data load
            load_progress(config.out, config.to_dict())
    except ValueError as err:
        raise SystemExit(f"apudae evaluate: error: {err}") from None
    with tqdm(desc=f"evaluate {args.bundle}", unit="batch") as bar:
        def progress(done: int, total: int) -> None:
            bar.total = total
            bar.update(done - bar.n)

        summary = run_evaluation(config, progress, resume=args.resume)
    print(Path(summary["files"]["markdown"]).read_text())
    print(f"wrote {', '.join(summary['files'].values())}")
    return 0
