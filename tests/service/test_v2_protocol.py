"""The Open Inference Protocol routes on the tiny bundle, in process: what each answers, and a clear 4xx in
the protocol's ``{"error": ...}`` for every kind of bad request (tritonclient against a real server:
test_v2_tritonclient.py)."""
from __future__ import annotations

import asyncio
import json
import threading

import numpy as np
import pytest
import torch
from PIL import Image

from apudae.service.main import IMAGE_ROUTES
from apudae.training.bench.inputs import tensor_request
from service_fixtures import client, make_settings, png_bytes  # noqa: F401 (pytest fixtures)
from test_overload import with_app

INFER = "/v2/models/tiny/infer"
PURIFY = "/v2/models/tiny-purify/infer"
PURIFICATION = ["error_before", "error_after", "z_score", "p_value", "steps"]


def images(count: int = 2, seed: int = 0) -> np.ndarray:
    """``count`` random 8-bit 1x28x28 images, (count, 1, 28, 28) uint8."""
    return np.random.default_rng(seed).integers(0, 256, (count, 1, 28, 28), dtype=np.uint8)


def png_of(array: np.ndarray) -> list[bytes]:
    """Each (1, H, W) uint8 image of ``array`` as a PNG."""
    return [png_bytes(Image.fromarray(image[0], mode="L")) for image in array]


def json_request(array: np.ndarray, datatype: str = "UINT8", **fields) -> dict:
    return {"inputs": [{"name": "images", "shape": list(array.shape), "datatype": datatype,
                        "data": array.ravel().tolist()}], **fields}


def binary_request(header: dict, data: bytes, length: int | None = None) -> dict:
    """httpx keyword arguments of a binary-extension request: ``header`` as JSON, then ``data``; the length
    header says ``length`` (default: the JSON's true length)."""
    text = json.dumps(header).encode()
    return {"content": text + data,
            "headers": {"Inference-Header-Content-Length": str(len(text) if length is None else length)}}


def binary_header(shape: list[int], size: int, datatype: str = "UINT8", **fields) -> dict:
    return {"inputs": [{"name": "images", "shape": shape, "datatype": datatype,
                        "parameters": {"binary_data_size": size}}], **fields}


def outputs(answer) -> dict[str, dict]:
    return {o["name"]: o for o in answer.json()["outputs"]}


def refused(answer, status: int, *words: str) -> None:
    assert answer.status_code == status, answer.text
    message = answer.json()["error"]
    assert all(word in message for word in words), message


def test_server_and_model_metadata_and_probes(client):
    assert client.get("/v2").json() == {"name": "apudae", "version": "0.1.0", "extensions": ["binary_tensor_data"]}
    assert client.get("/v2/health/live").json() == {"live": True}
    assert client.get("/v2/health/ready").json() == {"ready": True}
    assert client.get("/v2/models/tiny-purify/ready").json() == {"name": "tiny-purify", "ready": True}
    classify, purify = client.get("/v2/models/tiny").json(), client.get("/v2/models/tiny-purify").json()
    assert classify["inputs"] == [{"name": "images", "datatype": "FP32", "shape": [-1, 1, 28, 28]}]
    assert classify["parameters"]["input_shapes"] == [[-1, 1, 28, 28], [-1, 28, 28, 1]]
    assert [o["name"] for o in classify["outputs"]] == ["probabilities", "class_index", "label", *PURIFICATION,
                                                        "flagged"]
    assert classify["outputs"][0] == {"name": "probabilities", "datatype": "FP32", "shape": [-1, 10]}
    assert [o["name"] for o in purify["outputs"]] == ["purified", *PURIFICATION, "flagged"]
    assert "purify" in classify["parameters"]["request_parameters"]
    assert "purify" not in purify["parameters"]["request_parameters"]


def test_ready_turns_503_when_shutdown_begins(client):
    client.app.state.service.begin_shutdown()
    refused(client.get("/v2/health/ready"), 503, "shutting down")
    assert client.get("/v2/models/tiny/ready").json()["ready"] is False


def test_json_infer_classifies_each_image_and_echoes_the_id(client):
    answer = client.post(INFER, json=json_request(images(), id="req-1", parameters={"seed": 3}))
    assert answer.status_code == 200, answer.text
    assert answer.headers["content-type"] == "application/json"
    body, out = answer.json(), outputs(answer)
    assert (body["model_name"], body["id"]) == ("tiny", "req-1")
    probabilities = np.array(out["probabilities"]["data"]).reshape(out["probabilities"]["shape"])
    assert probabilities.shape == (2, 10) and np.allclose(probabilities.sum(axis=1), 1, atol=1e-5)
    assert out["class_index"]["data"] == probabilities.argmax(axis=1).tolist()
    assert out["label"] == {"name": "label", "datatype": "BYTES", "shape": [2],
                            "data": [f"class {i}" for i in out["class_index"]["data"]]}
    assert all(0 <= s <= 3 for s in out["steps"]["data"]) and out["z_score"]["datatype"] == "FP64"


def test_binary_nhwc_fp32_equals_json_nchw_uint8(client):
    x = images()
    expected = outputs(client.post(INFER, json=json_request(x, parameters={"seed": 5})))
    nhwc = np.ascontiguousarray(x.transpose(0, 2, 3, 1), dtype=np.float32) / 255
    header = binary_header([2, 28, 28, 1], nhwc.nbytes, "FP32", parameters={"seed": 5, "binary_data_output": True},
                           outputs=[{"name": "class_index"}, {"name": "probabilities", "parameters": {"binary_data": False}}])
    answer = client.post(INFER, **binary_request(header, nhwc.tobytes()))
    assert answer.status_code == 200, answer.text
    length = int(answer.headers["inference-header-content-length"])
    head = json.loads(answer.content[:length])
    index, probabilities = head["outputs"]
    assert index["parameters"] == {"binary_data_size": 16} and "data" not in index
    assert np.frombuffer(answer.content[length:], "<i8").tolist() == expected["class_index"]["data"]
    assert probabilities["data"] == pytest.approx(expected["probabilities"]["data"], abs=1e-6)


def test_purify_model_answers_the_purified_images_in_the_input_layout_and_datatype(client):
    x = images(1)
    body, headers = tensor_request(torch.from_numpy(x).float() / 255, {"variant": "A", "n": 2})
    answer = client.post(PURIFY, content=body, headers=headers)
    assert answer.status_code == 200, answer.text
    head = json.loads(answer.content[:int(answer.headers["inference-header-content-length"])])
    purified, *rest = head["outputs"]
    assert (purified["name"], purified["datatype"], purified["shape"]) == ("purified", "UINT8", [1, 1, 28, 28])
    assert [o["name"] for o in rest] == [*PURIFICATION, "flagged"]
    nhwc = client.post(PURIFY, json=json_request(x.transpose(0, 2, 3, 1) / 255, "FP32", parameters={"n": 0}))
    assert outputs(nhwc)["purified"]["shape"] == [1, 28, 28, 1] and outputs(nhwc)["purified"]["datatype"] == "FP32"


def test_flags_equal_classify_at_each_rate_and_are_counted(client):
    x = images(4)
    pngs = [("files", (f"{i}.png", png, "image/png")) for i, png in enumerate(png_of(x))]
    for fpr in (0.001, 0.05):
        expected = [r["flagged"] for r in client.post("/classify", params={"seed": 2, "fpr": fpr}, files=pngs)
                    .json()["results"]]
        flagged = outputs(client.post(INFER, json=json_request(x, parameters={"seed": 2, "fpr": fpr})))["flagged"]
        assert (flagged["datatype"], flagged["data"]) == ("BOOL", expected)
    metrics = client.get("/metrics").text
    assert 'apudae_detector_checked_images_total{fpr="0.05",model="tiny"} 8.0' in metrics


def test_classify_without_purification_has_no_purification_outputs(client):
    answer = client.post(INFER, json=json_request(images(), parameters={"purify": False}))
    assert [o["name"] for o in answer.json()["outputs"]] == ["probabilities", "class_index", "label", "flagged"]
    refused(client.post(INFER, json=json_request(images(), parameters={"purify": False}, outputs=[{"name": "steps"}])),
            400, "unknown output 'steps'", "purify=false", "probabilities")


@pytest.mark.parametrize("request_fields, words", [
    ({"parameters": {"bogus": 1}}, ("unknown parameter 'bogus'", "variant, n, seed")),
    ({"parameters": {"variant": "Z"}}, ("parameters.variant",)),
    ({"parameters": {"n": 1000}}, ("parameters.n",)),
    ({"parameters": {"n": "3"}}, ("parameters.n",)),
    ({"parameters": {"fpr": 0.02}}, ("parameters.fpr", "0.001, 0.01 or 0.05")),
    ({"outputs": [{"name": "logits"}]}, ("unknown output 'logits'", "probabilities")),
    ({"outputs": [{"name": "label", "parameters": {"classification": 3}}]}, ("classification",)),
])
def test_bad_parameters_and_outputs_are_400_naming_the_valid_ones(client, request_fields, words):
    refused(client.post(INFER, json=json_request(images(1), **request_fields)), 400, *words)


@pytest.mark.parametrize("tensor, words", [
    ({"shape": [1, 28, 28]}, ("shape [1, 28, 28]", "[B, 1, 28, 28] or [B, 28, 28, 1]")),
    ({"shape": [1, 3, 28, 28]}, ("shape [1, 3, 28, 28]",)),
    ({"shape": [0, 1, 28, 28], "data": []}, ("B >= 1",)),
    ({"shape": [9, 1, 28, 28]}, ("9 images", "at most 8")),
    ({"datatype": "INT32"}, ("datatype 'INT32'", "UINT8", "FP32")),
    ({"data": [1, 2, 3]}, ("holds 3 values", "needs 784")),
    ({"data": ["a"] * 784}, ("numbers only",)),
    ({"data": [300] * 784}, ("UINT8", "0 to 255")),
    ({"data": [0.5] * 784}, ("UINT8", "whole numbers")),
    ({"datatype": "FP32", "data": [2.0] * 784}, ("[0, 1]",)),
    ({"name": "input0"}, ("one input 'images'", "input0")),
    ({"data": None}, ("'data' must be a JSON array",)),
])
def test_bad_tensors_are_400_with_what_to_fix(client, tensor, words):
    request = json_request(images(1))
    request["inputs"][0].update(tensor)
    refused(client.post(INFER, json=request), 400, *words)


def test_nan_fp32_is_refused(client):
    request = json_request(images(1), "FP32")
    request["inputs"][0]["data"][0] = float("nan")
    refused(client.post(INFER, content=json.dumps(request), headers={"content-type": "application/json"}), 400,
            "[0, 1]")


def test_bad_binary_bodies_are_400(client):
    x = images(1).tobytes()
    header = binary_header([1, 1, 28, 28], len(x))
    refused(client.post(INFER, **binary_request(header, x[:-10])), 400, "binary_data_size is 784", "774")
    refused(client.post(INFER, **binary_request(binary_header([1, 1, 28, 28], 700), x[:700])), 400, "needs 784")
    refused(client.post(INFER, **binary_request(header, x + b"extra")), 400, "5 bytes of binary data")
    text = json.dumps(header).encode()
    for lie in (len(text) + 5, len(text) - 5):  # the length header lies: JSON cut short, or binary read as JSON
        refused(client.post(INFER, **binary_request(header, x, lie)), 400, "Inference-Header-Content-Length")
    refused(client.post(INFER, **binary_request(header, x, 10**9)), 400, "body has only")
    refused(client.post(INFER, content=text + x, headers={"Inference-Header-Content-Length": "abc"}), 400,
            "byte count")
    refused(client.post(INFER, content=json.dumps(header)), 400, "binary_data_size needs the Inference-Header")
    both = binary_header([1, 1, 28, 28], len(x))
    both["inputs"][0]["data"] = [0] * 784
    refused(client.post(INFER, **binary_request(both, x)), 400, "both 'data' and binary_data_size")


@pytest.mark.parametrize("body", [b"{not json", b"[]", b'{"inputs": []}', b'{"inputs": [{"name": "images"}]}',
                                  b'{"inputs": 3}', "\u00e9".encode("latin-1")])
def test_malformed_requests_are_400(client, body):
    answer = client.post(INFER, content=body, headers={"content-type": "application/json"})
    assert answer.status_code == 400 and answer.json()["error"], answer.text


def test_unknown_model_route_method_and_encoding_answer_protocol_errors(client):
    refused(client.post("/v2/models/nope/infer", json=json_request(images(1))), 404, "unknown model 'nope'",
            "tiny, tiny-purify")
    refused(client.get("/v2/models/nope"), 404, "unknown model")
    refused(client.get("/v2/models/tiny/versions/1"), 404, "Not Found")
    refused(client.get(INFER), 405, "Method Not Allowed")
    refused(client.post(INFER, content=b"x", headers={"content-encoding": "gzip"}), 415, "uncompressed")
    refused(client.get("/v2?verbose=1"), 422, "unknown query parameter 'verbose'")
    refused(client.post(INFER + "?verbose=1", json=json_request(images(1))), 422, "unknown query parameter 'verbose'",
            "/v2/models/{name}/infer takes: none")


def test_infer_answers_503_while_the_models_load_and_past_the_deadline(make_settings):
    from fastapi.testclient import TestClient

    from apudae.service.main import create_app
    loading = TestClient(create_app(make_settings()), raise_server_exceptions=False)  # lifespan not run
    answer = loading.post(INFER, json=json_request(images(1)))
    refused(answer, 503, "still loading")
    assert answer.headers["Retry-After"] == "5"

    async def scenario(client, state):
        return await client.post(INFER, json=json_request(images(1), parameters={"purify": False}))
    answer = asyncio.run(with_app(make_settings(request_deadline=0.05), scenario, threading.Event()))
    refused(answer, 503, "deadline")
    assert answer.headers["Retry-After"] == "1"


def test_body_limit_answers_413_in_the_protocol_shape(make_settings):
    from fastapi.testclient import TestClient

    from apudae.service.main import create_app
    with TestClient(create_app(make_settings(max_body_bytes=1000)), raise_server_exceptions=False) as small:
        refused(small.post(INFER, json=json_request(images(2))), 413, "exceeds 1000 bytes")


def test_infer_is_admission_controlled_and_counted_like_the_image_routes(client):
    assert INFER in IMAGE_ROUTES and PURIFY in IMAGE_ROUTES and "/classify" in IMAGE_ROUTES
    assert "/v2/models/tiny" not in IMAGE_ROUTES and "/v2/models/tiny/ready" not in IMAGE_ROUTES
    assert client.post(INFER, json=json_request(images(3))).status_code == 200
    metrics = client.get("/metrics").text
    assert 'apudae_http_requests_total{method="POST",route="/v2/models/{name}/infer",status="200"} 1.0' in metrics
    assert 'apudae_batch_size_images_sum{model="tiny",operation="classify"} 3.0' in metrics
    assert 'apudae_input_reconstruction_error_count{model="tiny"} 3.0' in metrics


def test_openapi_documents_the_v2_routes(client):
    paths = client.get("/openapi.json").json()["paths"]
    assert {"/v2", "/v2/health/live", "/v2/health/ready", "/v2/models/{name}", "/v2/models/{name}/ready",
            "/v2/models/{name}/infer"} <= set(paths)
    infer = paths["/v2/models/{name}/infer"]["post"]
    assert set(infer["requestBody"]["content"]) == {"application/json", "application/octet-stream"}
    assert "4XX" in infer["responses"] and "422" not in infer["responses"]
