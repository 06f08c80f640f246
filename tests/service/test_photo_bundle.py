"""A bundle with declared preprocessing (an imported classifier, 12 classes): uploads of photo size and odd
aspect ratios are resized and centre-cropped, an upload at the input size is taken as it is, and /purify
returns the purified crop at the model's size."""
from __future__ import annotations

import io

import numpy as np
import pytest
import torch
from fastapi.testclient import TestClient
from PIL import Image
from service_fixtures import png_bytes

from apudae.models.bundle import load_bundle
from apudae.service.main import create_app
from apudae.service.settings import Settings


@pytest.fixture
def photo_client(photo_models_dir, tmp_path):
    settings = Settings(model_dir=photo_models_dir, device="cpu", max_batch_size=8, max_batch_wait=0.01,
                        max_queue_size=64, max_images=8, max_pixels=1_000_000, max_photo_pixels=25_000_000,
                        max_photo_images=32, max_body_bytes=8 * 2**20,
                        request_deadline=60.0, eval_dir=tmp_path / "evaluations")
    with TestClient(create_app(settings), raise_server_exceptions=False) as client:
        yield client


def _photo(width: int, height: int, seed: int = 0) -> Image.Image:
    """Smooth colour gradients with a little noise: compresses like a photo."""
    rng = np.random.default_rng(seed)
    y, x = np.mgrid[0:height, 0:width].astype(np.float32)
    rgb = np.stack([x / width, y / height, np.full_like(x, 0.5)], axis=2) * 230
    rgb += rng.normal(0, 8, rgb.shape)
    return Image.fromarray(rgb.clip(0, 255).astype(np.uint8), mode="RGB")


def _files(*blobs: bytes, kind: str = "image/jpeg"):
    return [("files", (f"photo{i}.jpg", blob, kind)) for i, blob in enumerate(blobs)]


@pytest.mark.parametrize("size", [(4000, 3000), (1000, 50), (33, 900)])
def test_a_photo_of_any_size_and_aspect_is_classified(photo_client, size):
    answer = photo_client.post("/classify?model=photo", files=_files(png_bytes(_photo(*size), "JPEG", quality=90)))
    assert answer.status_code == 200, answer.text
    result = answer.json()["results"][0]
    assert len(result["probabilities"]) == 12 and result["label"].startswith("photo class ")


def test_models_shows_the_preprocessing_and_classify_the_top_5(photo_client):
    model = photo_client.get("/models").json()["models"][0]
    assert model["preprocessing"] == {"resize": 36, "crop": 32, "interpolation": "bicubic"}
    answer = photo_client.post("/classify?model=photo", files=_files(png_bytes(_photo(64, 48), "JPEG")))
    top5 = answer.json()["results"][0]["top5"]
    assert len(top5) == 5 and [t["probability"] for t in top5] == sorted((t["probability"] for t in top5), reverse=True)


def test_purify_returns_the_crop_at_the_models_size(photo_client):
    answer = photo_client.post("/purify?model=photo", files=_files(png_bytes(_photo(640, 480), "WEBP")),
                               headers={"Accept": "image/png"})
    assert answer.status_code == 200, answer.text
    assert Image.open(io.BytesIO(answer.content)).size == (32, 32)


def test_an_upload_at_the_input_size_reaches_the_classifier_unchanged(photo_client, photo_models_dir):
    """Without purification, the probabilities equal the bundle's classifier on the exact pixels sent."""
    image = _photo(32, 32, seed=5)
    answer = photo_client.post("/classify?model=photo&purify=false", files=_files(png_bytes(image), kind="image/png"))
    assert answer.status_code == 200, answer.text
    pixels = torch.from_numpy(np.asarray(image, dtype=np.float32) / 255).permute(2, 0, 1)[None]
    with torch.no_grad():
        expected = torch.softmax(load_bundle(photo_models_dir / "photo").classifier(pixels), dim=1)[0]
    np.testing.assert_allclose(answer.json()["results"][0]["probabilities"], expected.numpy(), atol=1e-5)


def test_a_photo_bundle_takes_32_photos_a_request_under_its_own_limits(photo_client):
    """The photo limits (max_photo_images 32, max_photo_pixels 25 MP) apply, not the thumbnail ones (8 images,
    1 MP): 32 photos of 1200 x 900 each are answered, a 33rd is refused with the limit to keep to."""
    photo = png_bytes(_photo(1200, 900), "JPEG", quality=80)
    answer = photo_client.post("/classify?model=photo", files=_files(*[photo] * 32))
    assert answer.status_code == 200, answer.text
    assert len(answer.json()["results"]) == 32
    refused = photo_client.post("/classify?model=photo", files=_files(*[photo] * 33))
    assert refused.status_code == 422 and "at most 32 per request" in refused.json()["detail"]


def test_a_decompression_bomb_is_still_refused(photo_client):
    bomb = png_bytes(Image.new("L", (6000, 6000)))
    answer = photo_client.post("/classify?model=photo", files=_files(bomb, kind="image/png"))
    assert answer.status_code == 422 and "at most 25000000 allowed" in answer.json()["detail"]


def test_serving_an_imported_bundle_never_builds_its_differentiable_copy(photo_models_dir, monkeypatch):
    """The service classifies with classifier.onnx itself; the torch copy is built only when asked for."""
    import apudae.models.bundle as bundle_module

    built = []
    real_copy = bundle_module.differentiable_copy
    monkeypatch.setattr(bundle_module, "differentiable_copy", lambda *a: built.append(a) or real_copy(*a))
    bundle = load_bundle(next(p for p in photo_models_dir.iterdir() if (p / "bundle.json").is_file()))
    assert built == []
    assert bundle.classifier(torch.rand(1, *bundle.input_shape)).shape[0] == 1
    assert len(built) == 1 and bundle.classifier is bundle.classifier  # built once, then kept


def test_the_photo_image_limit_never_exceeds_the_queue():
    settings = Settings(max_queue_size=16, max_images=8)
    assert settings.image_limits(photos=True) == (16, settings.max_photo_pixels)
    assert settings.image_limits(photos=False) == (8, settings.max_pixels)
