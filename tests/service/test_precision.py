"""The bf16 purification path gives images in range and, on a tiny bundle, the fp32 steps' outcome."""
import torch

from apudae.models.bundle import load_bundle
from apudae.models.purification import PURIFIERS
from apudae.service.engine import ModelRuntime


def test_bf16_runtime_purifies_in_range_and_keeps_scores_in_fp32(tiny_models_dir):
    bundle = load_bundle(tiny_models_dir / "tiny")
    fp32 = ModelRuntime(bundle, torch.device("cpu"), "fp32")
    bf16 = ModelRuntime(bundle, torch.device("cpu"), "bf16")
    images = torch.rand(4, *bundle.input_shape, generator=torch.Generator().manual_seed(0))
    settings = fp32.default_settings(seed=0)
    results = bf16.purify(images, settings)
    assert all(r.pixels.dtype == torch.float32 and 0 <= r.pixels.min() and r.pixels.max() <= 1 for r in results)
    assert [s.error for s in bf16.score(images)] == [s.error for s in fp32.score(images)]
    reference = fp32.purify(images, settings)
    for low, full in zip(results, reference):
        assert abs(low.before.error - full.before.error) <= 0.02 * full.before.error


def test_auto_precision_is_bf16_only_on_a_cpu_with_amx_bf16(monkeypatch):
    from apudae.service import engine

    for has_amx, expected in ((True, "bf16"), (False, "fp32")):
        monkeypatch.setattr(engine, "cpu_has_amx_bf16", lambda has_amx=has_amx: has_amx)
        assert engine.resolve_precision("auto", torch.device("cpu")) == expected
        assert engine.resolve_precision("auto", torch.device("cuda")) == "fp32"  # not measured on a GPU
        assert engine.resolve_precision("fp32", torch.device("cpu")) == "fp32"
        assert engine.resolve_precision("bf16", torch.device("cpu")) == "bf16"


def test_every_variant_runs_under_bf16_and_returns_float32_images_and_errors(tiny_models_dir):
    runtime = ModelRuntime(load_bundle(tiny_models_dir / "tiny"), torch.device("cpu"), "bf16")
    images = torch.rand(3, *runtime.bundle.input_shape, generator=torch.Generator().manual_seed(1))
    for variant in PURIFIERS:
        for result in runtime.purify(images, runtime.default_settings(variant=variant, seed=0)):
            assert result.pixels.dtype == torch.float32 and 0 <= result.pixels.min() <= result.pixels.max() <= 1
            assert result.error_after >= 0, variant
