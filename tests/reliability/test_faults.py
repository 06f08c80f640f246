"""Issue 5 item 4: faults. A bundle with a wrong hash or a missing file is left out with a clear log
while the others serve; a batch that runs out of memory is split and retried (simulated
``torch.OutOfMemoryError`` on the CPU), and one that still fails fails only its own requests.

Covered in tests/service and not repeated here: a crashing /evaluate job leaves serving untouched
and shows its failure (test_evaluate.py::test_a_crashing_job_is_visible_and_serving_goes_on,
::test_the_real_harness_failing_on_missing_data_fails_the_job_only); results survive a restart and a
cut-off job resumes from its checkpoint (::test_results_survive_a_restart_and_a_cut_off_job_resumes);
a poisoned batch fails only its callers (test_batcher.py::test_a_failing_batch_fails_only_its_callers_and_the_worker_carries_on);
unparseable bundle.json (test_serve_settings.py::test_a_broken_bundle_is_left_out_and_the_others_serve)."""
from __future__ import annotations

import asyncio
import logging
import time

import torch
from fastapi.testclient import TestClient

from conftest import write_tiny_bundle
from reliability_fixtures import WAIT, client, digit_png, files_field, make_settings  # noqa: F401
from apudae.service.batcher import Batcher, BatchKey
from apudae.service.main import create_app
from apudae.service.metrics import ServiceMetrics

KEY = BatchKey("m", "op", None)


def test_tampered_and_incomplete_bundles_are_left_out_with_a_clear_log(make_settings, tmp_path, caplog):
    models = tmp_path / "models"
    for name in ("good", "tampered", "incomplete"):
        write_tiny_bundle(models / name, name)
    weights = models / "tampered" / "dae.safetensors"
    weights.write_bytes(weights.read_bytes()[:-1] + b"\x00")
    (models / "incomplete" / "classifier.onnx").unlink()
    with caplog.at_level(logging.ERROR), TestClient(create_app(make_settings(model_dir=models))) as client:
        assert client.get("/readyz").status_code == 200
        assert [m["name"] for m in client.get("/models").json()["models"]] == ["good"]
        assert client.post("/score", files=files_field(("a.png", digit_png()))).status_code == 200
        assert client.post("/score", params={"model": "tampered"},
                           files=files_field(("a.png", digit_png()))).status_code == 404
    messages = [r.getMessage() for r in caplog.records if r.levelno == logging.ERROR]
    assert any("model tampered left out" in m and "dae.safetensors" in m and "SHA-256" in m for m in messages), messages
    assert any("model incomplete left out" in m and "classifier.onnx" in m for m in messages), messages


class OutOfMemoryAbove:
    """A batch function that raises ``torch.OutOfMemoryError`` on batches above ``limit`` images
    (``limit`` 0: always), else returns each image's first pixel; records the sizes it saw."""

    def __init__(self, limit: int):
        self.limit, self.sizes = limit, []

    def __call__(self, images: torch.Tensor) -> list[float]:
        self.sizes.append(images.shape[0])
        if images.shape[0] > self.limit:
            raise torch.OutOfMemoryError("CUDA out of memory (simulated)")
        return images[:, 0, 0, 0].tolist()


def submit_together(batcher: Batcher, run, *requests: list[float]):
    """Submit the requests at once (one batch) and gather their results or errors."""
    async def scenario():
        deadline = time.monotonic() + WAIT
        return await asyncio.gather(*(batcher.submit(KEY, torch.tensor(r).view(-1, 1, 1, 1), run, deadline)
                                      for r in requests), return_exceptions=True)
    return scenario()


def test_out_of_memory_splits_the_batch_and_every_request_gets_its_own_slice():
    async def scenario():
        batcher = Batcher(max_batch_size=8, max_wait=1.0, max_queue_size=32, metrics=ServiceMetrics())
        run = OutOfMemoryAbove(2)
        results = await submit_together(batcher, run, [1, 2], [3, 4, 5], [6], [7, 8])
        await batcher.close(1)
        return results, run.sizes
    results, sizes = asyncio.run(asyncio.wait_for(scenario(), WAIT))
    assert results == [[1, 2], [3, 4, 5], [6], [7, 8]]
    assert sizes[0] == 8 and max(sizes[1:]) <= 4 and sum(s for s in sizes if s <= 2) == 8


def test_out_of_memory_on_single_images_fails_only_that_batch_and_the_worker_carries_on():
    async def scenario():
        batcher = Batcher(max_batch_size=4, max_wait=0.5, max_queue_size=32, metrics=ServiceMetrics())
        run = OutOfMemoryAbove(0)
        failed = await submit_together(batcher, run, [1, 2], [3])
        run.limit = 8  # memory is back
        after = await submit_together(batcher, run, [4], [5, 6])
        await batcher.close(1)
        return failed, after, run.sizes
    failed, after, sizes = asyncio.run(asyncio.wait_for(scenario(), WAIT))
    assert all(isinstance(r, torch.OutOfMemoryError) for r in failed)
    assert sizes[:2] == [3, 1]  # split down to a single image that still does not fit, then failed
    assert after == [[4], [5, 6]]


def test_out_of_memory_over_http_fails_its_own_requests_while_other_lanes_serve(client, monkeypatch):
    runtime = client.app.state.service.model(None)
    monkeypatch.setattr(runtime, "score", OutOfMemoryAbove(0))
    files = files_field(("a.png", digit_png()), ("b.png", digit_png(1)))
    failed = client.post("/score", files=files)
    assert failed.status_code == 500 and "OutOfMemoryError" in failed.json()["detail"]
    assert client.post("/classify", files=files).status_code == 200  # another lane, same model
    assert client.get("/readyz").status_code == 200
    monkeypatch.undo()
    assert client.post("/score", files=files).status_code == 200
    assert client.app.state.service.metrics.registry.get_sample_value(
        "apudae_http_requests_total", {"route": "/score", "method": "POST", "status": "500"}) == 1
