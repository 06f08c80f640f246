"""A seconds-long run of ``apudae bench`` on the tiny bundle, so the bench cannot rot (no timing asserted)."""
from __future__ import annotations

import argparse
import asyncio
import io
import itertools
import json
import shutil

import pytest
import torch
from PIL import Image

import apudae.training.bench as bench
from apudae.models.bundle import load_bundle
from apudae.training.attacks.base import quantize_8bit
from apudae.training.bench.engine_candidates import compare_candidates
from apudae.training.bench.inputs import BenchImages, png_uploads, tensor_request
from apudae.training.bench.load import upload_target, tensor_target
from apudae.training.bench.offline import SweepPlan
from apudae.training.bench.report import _engine_candidates
from apudae.training.bench.served import ServePlan, drained, running_service
from apudae.training.bench.stats import Spread, percentile
from apudae.service.engine import ModelRuntime


def test_bench_smoke_writes_json_and_report(tiny_models_dir, tmp_path):
    parser = argparse.ArgumentParser()
    bench.add_arguments(parser)
    out_json, out_md = tmp_path / "performance.json", tmp_path / "PERFORMANCE.md"
    args = parser.parse_args([
        "--model-dir", str(tiny_models_dir), "--threads", "1", "--batch-sizes", "1,2", "--repeats", "1",
        "--images", "4", "--peak-size", "64", "--candidate-batch-sizes", "2", "--candidate-images", "0",
        "--concurrency", "2", "--rate-fractions", "0.5", "--duration", "0.5", "--serve-max-batch", "2",
        "--data-dir", str(tmp_path),
        "--json", str(out_json), "--markdown", str(out_md)])
    assert bench.run(args) == 0

    result = json.loads(out_json.read_text())
    tiny = result["bundles"]["tiny"]
    assert set(tiny["flops"]) == {"direct", "A", "B", "C", "D", "E", "F", "G"}
    assert tiny["flops"]["F"]["dae_step"] > tiny["flops"]["F"]["dae_forward"] > 0
    assert tiny["pool_flops"]["batch"] == 4 and tiny["pool_flops"]["clean_to_adversarial"] > 0
    assert [row["batch"] for row in tiny["floor"]] == [1, 2]
    assert {(row["layout"], row["precision"]) for row in tiny["candidates"]} >= {("nchw", "fp32"), ("nchw", "bf16")}
    assert {row["kind"] for row in tiny["engine"]["F"]} == {"clean", "adversarial"}
    assert all(0 <= row["moved_share"] <= 1 and (row["moved_share"] > 0) == (row["mean_steps"] > 0)
               for row in tiny["engine"]["F"])
    served = result["served"]
    assert served["unbatched"]["max_batch_size"] == 1
    assert all(row["errors"] == 0 for row in served["batched"]["closed_loop"] + served["unbatched"]["closed_loop"])
    assert all(row["errors"] == 0 for row in served["tensor"]["closed_loop"] + served["tensor"]["open_loop"])
    assert served["tensor"]["path"] == "/v2/models/tiny/infer"
    row = served["batched"]["closed_loop"][0]
    assert row["server_cpu_per_image"]["median"] > 0 and row["client_cpu_per_request"]["median"] > 0
    assert 0 < row["compute_duty"]["median"] <= 1 and row["in_batch_rate"]["median"] > 0
    report = out_md.read_text()
    assert "## Targets" in report and "<!-- bench:end -->" in report and "served tensor >= 85%" in report

    flops_only = parser.parse_args(["--model-dir", str(tiny_models_dir), "--sections", "flops", "--threads", "1",
                                     "--peak-size", "64", "--repeats", "1", "--json", str(tmp_path / "flops.json"),
                                     "--markdown", str(tmp_path / "flops.md"), "--data-dir", str(tmp_path)])
    assert bench.run(flops_only) == 0
    assert "FLOPs of one purification" in (tmp_path / "flops.md").read_text()

    timed_only = parser.parse_args(["--model-dir", str(tiny_models_dir), "--sections", "floor,engine", "--threads",
                                    "1", "--batch-sizes", "1", "--repeats", "1", "--images", "2", "--peak-size", "64",
                                    "--json", str(tmp_path / "timed.json"), "--markdown", str(tmp_path / "timed.md"),
                                    "--data-dir", str(tmp_path)])
    assert bench.run(timed_only) == 0  # the GFLOP/s columns still get the default variant's FLOPs
    assert json.loads((tmp_path / "timed.json").read_text())["bundles"]["tiny"]["flops"]["F"]["dae_step"] > 0

    out_md.write_text("# Performance\n\nhand-written analysis\n\n<!-- bench:begin -->old<!-- bench:end -->\n\nlog\n")
    bench.report.write_report(result, out_md)
    kept = out_md.read_text()
    assert "hand-written analysis" in kept and kept.rstrip().endswith("log") and "old" not in kept


def test_engine_candidates_report_accuracy_and_speed(tiny_models_dir):
    runtime = ModelRuntime(load_bundle(tiny_models_dir / "tiny"), torch.device("cpu"))
    generator = torch.Generator().manual_seed(0)
    clean = quantize_8bit(torch.rand(4, *runtime.bundle.input_shape, generator=generator))
    images = BenchImages(clean, clean, torch.randint(0, 10, (4,), generator=generator), 0.1, "random", "none")
    plan = SweepPlan((2,), 1, torch.device("cpu"))
    engine_dae = runtime.dae
    report = compare_candidates(runtime, runtime.default_settings(), images, 2, plan)
    reference, *others = report["candidates"]
    assert (reference["layout"], reference["precision"]) == ("nchw", "fp32") and reference["pgd_differ"] == 0
    assert {(r["layout"], r["precision"]) for r in others} == {("channels_last", "fp32"), ("channels_last", "bf16")}
    assert runtime.dae is engine_dae  # the engine's own DAE is restored
    assert "channels_last bf16" in "\n".join(_engine_candidates({"engine_candidates": report}))


def test_spread_and_percentile():
    spread = Spread.of([3.0, 1.0, 2.0])
    assert (spread.median, spread.low, spread.high, spread.n) == (2.0, 1.0, 3.0, 3)
    assert spread.inverse(6.0).median == 3.0 and spread.inverse(6.0).low == 2.0
    assert percentile([1.0, 2.0, 3.0, 4.0, 5.0], 50) == 3.0
    assert percentile([], 99) != percentile([], 99)  # NaN


def test_both_closed_loop_generators_count_answers_and_the_service_drains(tiny_models_dir):
    if shutil.which("wrk") is None:
        pytest.skip("wrk is not installed (.ci/run installs it): only the Python generator can run")
    images = quantize_8bit(torch.rand(3, 1, 28, 28, generator=torch.Generator().manual_seed(0)))
    uploads = png_uploads(images)
    plan = ServePlan((2,), (), 1.0, 1, 2, 0.005, 16)
    with running_service(tiny_models_dir / "tiny", 2, plan, 1) as base:
        tensors = [tensor_request(image[None]) for image in images]
        targets = (upload_target(base, "tiny", uploads), tensor_target(base, "tiny", tensors))
        for target, generator in itertools.product(targets, ("wrk", "python")):
            run = asyncio.run(ServePlan(**{**plan.__dict__, "closed_loop_generator": generator}).closed_loop(
                target, 3, 1.0))
            summary = run.summary()
            assert summary["answered"] > 0 and summary["errors"] == 0 and summary["rejected_share"] == 0, \
                (target.path, generator)
            assert 0 < summary["p50"] <= summary["p99"], (target.path, generator)
            assert drained(base, "tiny").in_flight == 0


def test_photo_uploads_are_served_as_jpeg_files(photo_models_dir):
    """The photo target posts whole JPEG files of any size; the service resizes and crops each one."""
    photos = []
    for width, height in ((640, 480), (300, 500)):
        buffer = io.BytesIO()
        Image.new("RGB", (width, height), (120, 60, 200)).save(buffer, "JPEG")
        photos.append(buffer.getvalue())
    plan = ServePlan((2,), (), 1.0, 1, 2, 0.005, 16)
    with running_service(photo_models_dir / "photo", 2, plan, 1) as base:
        run = asyncio.run(plan.closed_loop(upload_target(base, "photo", photos, media_type="image/jpeg"), 2, 1.0))
        summary = run.summary()
        assert summary["answered"] > 0 and summary["errors"] == 0 and summary["rejected_share"] == 0
        assert drained(base, "photo").in_flight == 0
