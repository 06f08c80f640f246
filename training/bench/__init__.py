"""``apudae bench``: the purifier and the served path against the machine's limits.

One run measures, in order: the machine and its peak rates (``machine``); per bundle the FLOPs of one
purification per variant (``flops``), the bare-step floor, the loop and the engine per batch size on
clean and adversarial inputs (``offline``), layout/precision candidates of the step
(``candidates``) and of the whole engine with their accuracy (``engine_candidates``); then, for one
bundle, the served path with the batcher and with max batch 1 for multipart PNG uploads to /classify,
and with the batcher for binary UINT8 tensors to the Open Inference Protocol's /v2 infer (``served``). It writes every figure
to JSON and renders docs/PERFORMANCE.md from it (``report``).
"""
from __future__ import annotations

import argparse
import json
import logging
import sys
from functools import partial
from pathlib import Path

import torch

from apudae.models.bundle import load_bundle
from apudae.models.purification import VARIANTS
from apudae.training.bench.candidates import candidate_sweep
from apudae.training.bench.flops import pool_flops, purification_flops
from apudae.training.bench.inputs import bench_images, photo_uploads, png_uploads, tensor_request
from apudae.training.bench.load import upload_target, tensor_target
from apudae.training.bench.machine import describe, peak_rates
from apudae.training.bench.offline import SweepPlan, engine_sweep, floor_sweep, loop_sweep
from apudae.training.bench.engine_candidates import compare_candidates
from apudae.training.bench.report import write_report
from apudae.training.bench.served import ServePlan, served_sweep
from apudae.training.bench.wrk import available as wrk_available
from apudae.service.engine import ModelRuntime

log = logging.getLogger(__name__)


SECTIONS = ("flops", "floor", "candidates", "loop", "engine", "engine-candidates", "served")
SERVED_TARGETS = ("png", "tensor", "photo")
DEFAULT_SERVED_TARGETS = ("png", "tensor")


def _sections(text: str) -> frozenset[str]:
    chosen = frozenset(text.split(","))
    if not chosen <= set(SECTIONS):
        raise argparse.ArgumentTypeError(f"unknown sections {sorted(chosen - set(SECTIONS))}; "
                                         f"choose from {','.join(SECTIONS)}")
    return chosen


def _targets(text: str) -> tuple[str, ...]:
    chosen = tuple(text.split(","))
    if not set(chosen) <= set(SERVED_TARGETS):
        raise argparse.ArgumentTypeError(f"unknown served targets {sorted(set(chosen) - set(SERVED_TARGETS))}; "
                                         f"choose from {','.join(SERVED_TARGETS)}")
    return chosen


def _ints(text: str) -> tuple[int, ...]:
    return tuple(int(v) for v in text.split(","))


def _floats(text: str) -> tuple[float, ...]:
    return tuple(float(v) for v in text.split(","))


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """Options of ``apudae bench``; the defaults are the full measurement of docs/PERFORMANCE.md."""
    a = parser.add_argument
    a("--sections", type=_sections, default=frozenset(SECTIONS), help=f"what to measure (default: all of "
      f"{','.join(SECTIONS)}); the machine and its peak are always measured")
    a("--model-dir", type=Path, default=Path("models"), help="directory of bundles (default: models)")
    a("--bundles", default=None, help="comma-separated bundle directories to measure (default: all)")
    a("--data-dir", default=None, help="data sets (default: APUDAE_DATA_DIR)")
    a("--device", default="cpu", help="cpu or cuda[:N] (default: cpu)")
    a("--precision", choices=("auto", "fp32", "bf16"), default="auto", help="purification precision of the engine "
      "and the served runs, as APUDAE_PRECISION (default auto: bf16 on CPUs with AMX-BF16, else fp32)")
    a("--threads", type=int, default=torch.get_num_threads(), help="torch threads (default: all cores)")
    a("--variants", default=",".join(VARIANTS), help="variants whose FLOPs are counted (default: all)")
    a("--sweep-variants", default=None, help="variants swept over batch sizes (default: the bundle's)")
    a("--batch-sizes", type=_ints, default=(1, 2, 4, 8, 16, 32, 64, 128, 256), help="offline batch sizes")
    a("--candidate-batch-sizes", type=_ints, default=(1, 32, 256), help="batch sizes of the layout/precision "
      "candidates of the bare step (default: 1,32,256)")
    a("--repeats", type=int, default=3, help="timed repeats per point (default: 3)")
    a("--images", type=int, default=256, help="test images in the input pool (default: 256)")
    a("--peak-size", type=int, default=2048, help="matrix size of the peak matmul (default: 2048)")
    a("--candidate-images", type=int, default=500, help="images of the engine candidates' accuracy check (0: skip)")
    a("--candidate-batch", type=int, default=64, help="batch size of the engine candidates (default: 64)")
    a("--served-bundle", default=None, help="bundle for the served bench (default: mnist or the first; "
      "'none' skips it)")
    a("--concurrency", type=_ints, default=(1, 2, 4, 8, 16, 32, 64), help="closed-loop client counts")
    a("--rate-fractions", type=_floats, default=(0.25, 0.5, 0.75, 0.9), help="open-loop rates as fractions "
      "of the closed-loop saturation throughput")
    a("--duration", type=float, default=10.0, help="seconds per served point (default: 10)")
    a("--serve-max-batch", type=int, default=64, help="service max batch size (default: 64)")
    a("--serve-batch-wait", type=float, default=0.005, help="service max batch wait, s (default: 0.005)")
    a("--serve-queue", type=int, default=256, help="service max queue size, images (default: 256)")
    a("--served-targets", type=_targets, default=DEFAULT_SERVED_TARGETS, help="served request kinds: png (multipart "
      "to /classify, swept with the batcher and with max batch 1), tensor (binary UINT8 to /v2/models/<b>/infer, "
      "with the batcher), photo (a photo bundle's original JPEG test files to /classify, with the batcher); "
      "default: png,tensor")
    a("--load-generator", choices=("auto", "wrk", "python"), default="auto", help="closed-loop load: wrk "
      "(C, little CPU per request), python (httpx clients, more CPU per request) or auto: wrk when installed")
    a("--json", type=Path, default=Path("docs/performance.json"), help="JSON output")
    a("--markdown", type=Path, default=Path("docs/PERFORMANCE.md"), help="markdown output")


def _bundle_dirs(args: argparse.Namespace) -> list[Path]:
    if args.bundles:
        return [args.model_dir / name for name in args.bundles.split(",")]
    return sorted(p for p in args.model_dir.iterdir() if (p / "bundle.json").is_file())


def bench_bundle(path: Path, args: argparse.Namespace, plan: SweepPlan) -> dict:
    """Every offline measurement of one bundle."""
    runtime = ModelRuntime(load_bundle(path), plan.device, args.precision)
    images = bench_images(runtime.bundle, max(args.images, args.candidate_images), args.data_dir)
    pool = images.first(args.images)
    default = runtime.default_settings()
    out = {"name": runtime.name, "precision": runtime.precision, "input_shape": list(runtime.bundle.input_shape),
           "inputs": pool.source,
           "attack": pool.attack, "epsilon": images.epsilon, "default_settings": repr(default), "flops": {}}
    sections = args.sections
    # the timed tables need the default variant's FLOPs for their GFLOP/s columns; counting is cheap
    counted = args.variants.split(",") if "flops" in sections else [default.variant]
    clean, adversarial = pool.clean.to(plan.device), pool.adversarial.to(plan.device)
    for variant in counted:
        out["flops"][variant] = purification_flops(runtime.bundle, runtime.default_settings(variant=variant),
                                                    clean[:1], adversarial[:1])
    if "flops" in sections:
        out["pool_flops"] = pool_flops(runtime.bundle, default, clean, adversarial)
    out["floor"] = floor_sweep(runtime, pool, plan) if "floor" in sections else []
    if "candidates" in sections:
        out["candidates"] = candidate_sweep(runtime.dae, pool.adversarial, plan, args.candidate_batch_sizes)
    sweep = args.sweep_variants.split(",") if args.sweep_variants else [default.variant]
    out["loop"], out["engine"] = {}, {}
    for variant in sweep:
        settings = runtime.default_settings(variant=variant)
        if variant != "direct" and "loop" in sections:
            out["loop"][variant] = loop_sweep(runtime, settings, pool, plan)
        if "engine" in sections:
            out["engine"][variant] = engine_sweep(runtime, settings, pool, plan)
    if args.candidate_images and "engine-candidates" in sections:
        out["engine_candidates"] = compare_candidates(runtime, default, images.first(args.candidate_images),
                                                      args.candidate_batch, plan)
    return out


def run(args: argparse.Namespace) -> int:
    """Run the bench; writes ``args.json`` and ``args.markdown``."""
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    logging.getLogger("httpx").setLevel(logging.WARNING)
    torch.set_num_threads(args.threads)
    device = torch.device(args.device)
    plan = SweepPlan(args.batch_sizes, args.repeats, device)
    result = {"machine": describe(device, sys.argv[2:] if sys.argv[1:2] == ["bench"] else sys.argv[1:]),
              "options": {k: sorted(v) if isinstance(v, frozenset) else str(v) if isinstance(v, Path) else v
                          for k, v in vars(args).items()},
              "peak": peak_rates(device, args.peak_size, args.repeats), "bundles": {}}
    dirs = _bundle_dirs(args)
    if not dirs:
        log.error("no bundles under %s; train one or pass --model-dir", args.model_dir)
        return 1
    for path in dirs:
        log.info("bundle %s", path)
        result["bundles"][path.name] = bench_bundle(path, args, plan)
    served = args.served_bundle or next((p.name for p in dirs if p.name == "mnist"), dirs[0].name)
    if served != "none" and "served" in args.sections:
        result["served"] = bench_served(args.model_dir / served, args)
    args.json.parent.mkdir(parents=True, exist_ok=True)
    args.json.write_text(json.dumps(result, indent=1))
    write_report(result, args.markdown)
    print(f"wrote {args.json} and {args.markdown}")
    return 0


def bench_served(path: Path, args: argparse.Namespace) -> dict:
    """The served sweeps: PNG uploads with the batcher, then with max batch 1 at the same open-loop rates;
    binary tensors with the batcher; a photo bundle's original photo files with the batcher
    (``args.served_targets`` chooses)."""
    bundle = load_bundle(path)
    model = bundle.name
    generator = args.load_generator
    if generator == "auto":
        generator = "wrk" if wrk_available() else "python"
    elif generator == "wrk" and not wrk_available():
        raise SystemExit("--load-generator wrk: no wrk on the PATH (apt-get install wrk)")
    plan = ServePlan(args.concurrency, args.rate_fractions, args.duration, args.repeats, args.serve_max_batch,
                     args.serve_batch_wait, args.serve_queue, generator, args.precision)
    out, inputs = {"bundle": path.name}, []
    if {"png", "tensor"} & set(args.served_targets):
        images = bench_images(bundle, args.images, args.data_dir)
        inputs.append(f"adversarial 8-bit images ({images.attack}), one per request")
    if "png" in args.served_targets:
        uploads = png_uploads(images.adversarial)
        pngs = partial(upload_target, model=model, uploads=uploads)
        out["batched"] = served_sweep(path, model, pngs, plan, args.threads)
        rates = tuple(row["rate"] for row in out["batched"]["open_loop"])
        out["unbatched"] = served_sweep(path, model, pngs, ServePlan(**{**plan.__dict__, "max_batch_size": 1}),
                                        args.threads, rates=rates)
    if "tensor" in args.served_targets:
        requests = [tensor_request(image[None]) for image in images.adversarial]
        out["tensor"] = served_sweep(path, model, partial(tensor_target, model=model, requests=requests), plan,
                                     args.threads)
    if "photo" in args.served_targets:
        photos, source = photo_uploads(bundle, args.images, args.data_dir)
        inputs.append(f"photos: {source}, one per request, resized and cropped by the service")
        out["photo"] = served_sweep(path, model, partial(upload_target, model=model, uploads=photos,
                                                         media_type="image/jpeg"), plan, args.threads)
    out["inputs"] = "; ".join(inputs)
    return out
