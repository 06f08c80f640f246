"""The shipped MNIST bundle's detector through the service (skipped without the bundle or the data): a photo
sent to it is flagged and, with on_flag=reject, gets no digit; clean test digits are answered."""
from __future__ import annotations

import io
import shutil
from pathlib import Path

import pytest
from fastapi.testclient import TestClient
from PIL import Image

from apudae.service.main import create_app
from apudae.service.settings import Settings
from apudae.training.data import load_dataset

MNIST = Path(__file__).resolve().parents[2] / "models" / "mnist"
pytestmark = pytest.mark.skipif(not (MNIST / "bundle.json").is_file(), reason="no shipped mnist bundle")


def png(image: Image.Image) -> bytes:
    buffer = io.BytesIO()
    image.save(buffer, format="PNG")
    return buffer.getvalue()


def test_a_photo_sent_to_mnist_is_flagged_and_clean_digits_are_not(data_dir, tmp_path):
    photo_file = sorted((data_dir / "imagenet-sample").glob("*/*.JPEG"))[0]
    photo = png(Image.open(photo_file).convert("RGB").resize((640, 480)))
    digits = load_dataset("mnist", "test", data_dir).images[:16]
    shutil.copytree(MNIST, tmp_path / "models" / "mnist")
    settings = Settings(model_dir=tmp_path / "models", device="cpu", eval_dir=tmp_path / "evaluations")
    with TestClient(create_app(settings)) as client:
        answer = client.post("/classify", params={"resize": "true", "on_flag": "reject"},
                             files=[("files", ("photo.png", photo, "image/png"))]).json()
        (result,) = answer["results"]
        assert result["flagged"] and result["withheld"] and result["label"] is None and result["fpr"] == 0.01
        files = [("files", (f"{i}.png", png(Image.fromarray(d[0].numpy(), mode="L")), "image/png"))
                 for i, d in enumerate(digits)]
        results = client.post("/classify", params={"on_flag": "reject"}, files=files).json()["results"]
    assert sum(r["flagged"] for r in results) <= 1 and sum(r["label"] is not None for r in results) >= 15
    assert result["purification"]["z_score"] > 10  # the photo is far from every clean digit
