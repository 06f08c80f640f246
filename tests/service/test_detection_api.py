"""The detector in the service: /classify and /purify flag each image at the requested false-positive rate,
on_flag=reject withholds a flagged image's answer, bad options are 422s that name the valid ones, a bundle
without thresholds says its flags are unavailable, and /metrics counts what was flagged."""
from __future__ import annotations

import base64
import json
import shutil

import numpy as np
from fastapi.testclient import TestClient
from PIL import Image

from service_fixtures import client, digit_png, make_settings, png_bytes  # noqa: F401 (pytest fixtures)
from apudae.service.main import create_app

BLANK = png_bytes(Image.fromarray(np.zeros((28, 28), dtype=np.uint8), mode="L"))  # far from the tiny calibration


def files(*pngs: bytes) -> list:
    return [("files", (f"{i}.png", png, "image/png")) for i, png in enumerate(pngs)]


def test_classify_flags_at_the_default_rate_and_answers_flagged_images_by_default(client):
    body = client.post("/classify", files=files(BLANK, digit_png(1))).json()
    blank, noise = body["results"]
    assert (blank["flagged"], blank["fpr"], blank["withheld"]) == (True, 0.01, False)
    assert blank["label"] is not None and len(blank["probabilities"]) == 10
    assert (noise["flagged"], noise["withheld"]) == (False, False)


def test_on_flag_reject_withholds_only_the_flagged_images_answer(client):
    for purify in ("true", "false"):
        answer = client.post("/classify", params={"on_flag": "reject", "fpr": 0.05, "purify": purify},
                             files=files(BLANK, digit_png(1)))
        assert answer.status_code == 200, answer.text
        blank, noise = answer.json()["results"]
        assert blank["flagged"] and blank["withheld"] and blank["fpr"] == 0.05
        assert blank["label"] is None and blank["class_index"] is None and blank["probabilities"] is None
        assert not noise["withheld"] and noise["label"] is not None


def test_purify_flags_and_reject_withholds_the_image(client):
    blank, noise = client.post("/purify", params={"on_flag": "reject"}, files=files(BLANK, digit_png(1))).json()["results"]
    assert blank["flagged"] and blank["withheld"] and blank["image"] is None and blank["error_before"] > 0
    assert not noise["flagged"] and base64.b64decode(noise["image"])
    png = client.post("/purify", files=files(BLANK), headers={"Accept": "image/png"})
    assert png.headers["X-Apudae-Flagged"] == "true" and png.headers["X-Apudae-FPR"] == "0.01"
    refused = client.post("/purify", params={"on_flag": "reject"}, files=files(BLANK), headers={"Accept": "image/png"})
    assert refused.status_code == 422 and "on_flag=label" in refused.json()["detail"]


def test_bad_detector_options_are_422s_naming_the_valid_ones(client):
    answer = client.post("/classify", params={"fpr": 0.02}, files=files(digit_png(1)))
    assert answer.status_code == 422 and "0.001, 0.01, 0.05" in answer.json()["detail"]
    answer = client.post("/purify", params={"on_flag": "drop"}, files=files(digit_png(1)))
    assert answer.status_code == 422 and "'label' or 'reject'" in answer.text


def test_metrics_count_checked_and_flagged_images_per_rate(client):
    client.post("/classify", files=files(BLANK, digit_png(1), BLANK))
    client.post("/purify", params={"fpr": 0.001}, files=files(BLANK))
    metrics = client.get("/metrics").text
    assert 'apudae_detector_checked_images_total{fpr="0.01",model="tiny"} 3.0' in metrics
    assert 'apudae_flagged_images_total{fpr="0.01",model="tiny",reason="score"} 2.0' in metrics
    assert 'apudae_flagged_images_total{fpr="0.001",model="tiny",reason="score"} 1.0' in metrics
    assert 'apudae_detector_false_positive_rate{fpr="0.05",model="tiny"} 0.05' in metrics


def test_a_bundle_without_thresholds_says_flags_are_unavailable(make_settings, tiny_models_dir, tmp_path):
    models = tmp_path / "models"
    shutil.copytree(tiny_models_dir / "tiny", models / "tiny")
    meta = json.loads((models / "tiny" / "bundle.json").read_text())
    del meta["calibration"]["detector"]
    (models / "tiny" / "bundle.json").write_text(json.dumps(meta))
    with TestClient(create_app(make_settings(model_dir=models)), raise_server_exceptions=False) as old:
        (result,) = old.post("/classify", files=files(BLANK)).json()["results"]
        assert (result["flagged"], result["fpr"], result["withheld"]) == (None, None, False) and result["label"]
        for params in ({"fpr": 0.01}, {"on_flag": "reject"}):
            answer = old.post("/purify", params=params, files=files(BLANK))
            assert answer.status_code == 422 and "no detector thresholds" in answer.json()["detail"]
        assert old.post("/purify", files=files(BLANK), headers={"Accept": "image/png"}).headers[
            "X-Apudae-Flagged"] == "unavailable"
