"""The API on the tiny bundle: each route's happy path, the response shapes, probes and metrics."""
from __future__ import annotations

import base64
import io
import sys

from PIL import Image

from service_fixtures import client, digit_png, make_settings  # noqa: F401 (pytest fixtures)


def files(*pngs: bytes) -> list:
    return [("files", (f"{i}.png", png, "image/png")) for i, png in enumerate(pngs)]


def test_probes(client):
    assert client.get("/healthz").json() == {"status": "ok"}
    assert client.get("/readyz").status_code == 200


def test_readyz_turns_false_when_shutdown_begins(client):
    client.app.state.service.begin_shutdown()
    answer = client.get("/readyz")
    assert answer.status_code == 503 and answer.json()["status"] == "shutting down"


def test_models_lists_the_bundle(client):
    body = client.get("/models").json()
    assert body["default"] == "tiny"
    (model,) = body["models"]
    assert model["input_shape"] == [1, 28, 28] and len(model["classes"]) == 10
    assert {"mu", "sigma", "n", "histogram"} <= set(model["calibration"])
    assert model["purification_defaults"]["variant"] == "F"


def test_purify_multipart_returns_each_image_purified(client):
    answer = client.post("/purify", files=files(digit_png(0), digit_png(1)))
    assert answer.status_code == 200, answer.text
    body = answer.json()
    assert body["model"] == "tiny" and body["variant"] == "F" and [r["name"] for r in body["results"]] == ["0.png", "1.png"]
    for result in body["results"]:
        image = Image.open(io.BytesIO(base64.b64decode(result["image"])))
        assert image.mode == "L" and image.size == (28, 28)
        assert 0 <= result["steps"] <= body["n"]
        assert {"error_before", "error_after", "z_score", "p_value"} <= set(result)


def test_purify_json_base64_with_options(client):
    images = [base64.b64encode(digit_png(2)).decode(), "data:image/png;base64," + base64.b64encode(digit_png(3)).decode()]
    answer = client.post("/purify", params={"variant": "A", "n": 2}, json={"images": images})
    assert answer.status_code == 200, answer.text
    body = answer.json()
    assert (body["variant"], body["n"], len(body["results"])) == ("A", 2, 2)
    assert all(r["steps"] == 2 for r in body["results"])


def test_purify_with_a_seed_is_repeatable(client):
    first, second = (client.post("/purify", params={"seed": 7}, files=files(digit_png(4))).json() for _ in range(2))
    assert first["results"][0]["image"] == second["results"][0]["image"]


def test_purify_accept_png_returns_the_image_itself(client):
    answer = client.post("/purify", files=files(digit_png(5)), headers={"Accept": "image/png"})
    assert answer.status_code == 200 and answer.headers["content-type"] == "image/png"
    assert Image.open(io.BytesIO(answer.content)).size == (28, 28)
    assert float(answer.headers["X-Apudae-Error-Before"]) > 0


def test_purify_accept_png_needs_one_image(client):
    answer = client.post("/purify", files=files(digit_png(5), digit_png(6)), headers={"Accept": "image/png"})
    assert answer.status_code == 406 and "exactly one image" in answer.json()["detail"]


def test_classify_purifies_first_by_default(client):
    body = client.post("/classify", files=files(digit_png(7))).json()
    (result,) = body["results"]
    assert body["purified"] is True and result["purification"] is not None
    assert abs(sum(result["probabilities"]) - 1) < 1e-4
    assert result["label"] == f"class {result['class_index']}"
    assert result["probabilities"][result["class_index"]] == max(result["probabilities"])


def test_classify_without_purification(client):
    body = client.post("/classify", params={"purify": "false"}, files=files(digit_png(8))).json()
    assert body["purified"] is False and body["results"][0]["purification"] is None


def test_score_is_one_dae_pass(client):
    body = client.post("/score", files=files(digit_png(9))).json()
    (result,) = body["results"]
    assert result["error"] > 0 and 0 <= result["p_value"] <= 1


def test_resize_true_accepts_another_size_and_answers_at_the_upload_size(client):
    answer = client.post("/purify", params={"resize": "true"}, files=files(digit_png(1, size=(40, 30))))
    assert answer.status_code == 200, answer.text
    image = Image.open(io.BytesIO(base64.b64decode(answer.json()["results"][0]["image"])))
    assert image.size == (40, 30)


def test_metrics_hold_the_reconstruction_error_histogram_and_request_counts(client):
    client.post("/score", files=files(digit_png(1), digit_png(2)))
    client.post("/purify", files=files(digit_png(3)))
    text = client.get("/metrics").text
    assert 'apudae_input_reconstruction_error_count{model="tiny"} 3.0' in text
    assert 'apudae_input_reconstruction_error_bucket{le="1e-06",model="tiny"}' in text
    assert 'apudae_calibration_error_mean{model="tiny"}' in text
    assert 'apudae_http_requests_total{method="POST",route="/score",status="200"} 1.0' in text
    assert 'apudae_purification_steps_count{model="tiny"} 1.0' in text
    assert 'apudae_batch_size_images_count{model="tiny",operation="score"}' in text
    if sys.platform == "linux":  # prometheus-client's ProcessCollector reads /proc
        assert "process_cpu_seconds_total" in text and "process_resident_memory_bytes" in text


def test_openapi_documents_the_routes(client):
    schema = client.get("/openapi.json").json()
    assert {"/purify", "/classify", "/score", "/models", "/evaluate", "/evaluate/{job_id}"} <= set(schema["paths"])
    assert "multipart/form-data" in schema["paths"]["/purify"]["post"]["requestBody"]["content"]
    assert client.get("/docs").status_code == 200
