"""The bf16 purification path gives images in range and, on a tiny bundle, the fp32 steps' outcome."""
import torch

from models.bundle import load_bundle
from service.engine import ModelRuntime


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
