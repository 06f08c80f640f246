"""tritonclient (Triton's own HTTP client, PyPI ``tritonclient[http]``) against a real ``apudae serve`` on
loopback: probes, metadata, inference with JSON and binary tensors whose labels equal /classify's on the
same images (the detector's flags too), the purified images equal to /purify's, and bad requests answered 400/404 with a message."""
from __future__ import annotations

import base64
import io
import json
import sys
from pathlib import Path

import httpx
import numpy as np
import pytest
from PIL import Image

httpclient = pytest.importorskip("tritonclient.http", reason="tritonclient[http] is in the test extra")
from tritonclient.utils import InferenceServerException  # noqa: E402

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "reliability"))  # the real-server helper
from reliability_server import serve  # noqa: E402

SEED = 11  # the same seed gives the same purification on every route and in any batch


@pytest.fixture(scope="module")
def served(tiny_models_dir, tmp_path_factory):
    with serve(tiny_models_dir, tmp_path_factory.mktemp("v2"), max_images=8, max_batch_size=8) as served:
        yield served


@pytest.fixture(scope="module")
def triton(served):
    client = httpclient.InferenceServerClient(served.url.removeprefix("http://"), network_timeout=60)
    yield client
    client.close()


def images(count: int = 3) -> np.ndarray:
    return np.random.default_rng(1).integers(0, 256, (count, 1, 28, 28), dtype=np.uint8)


def pngs(x: np.ndarray) -> list:
    files = []
    for i, image in enumerate(x):
        buffer = io.BytesIO()
        Image.fromarray(image[0], mode="L").save(buffer, format="PNG")
        files.append(("files", (f"{i}.png", buffer.getvalue(), "image/png")))
    return files


def tensor(array: np.ndarray, datatype: str, binary: bool) -> "httpclient.InferInput":
    data = httpclient.InferInput("images", list(array.shape), datatype)
    data.set_data_from_numpy(array, binary_data=binary)
    return data


def test_live_ready_and_metadata(triton):
    assert triton.is_server_live() and triton.is_server_ready()
    assert triton.is_model_ready("tiny") and triton.is_model_ready("tiny-purify")
    assert "binary_tensor_data" in triton.get_server_metadata()["extensions"]
    metadata = triton.get_model_metadata("tiny")
    assert metadata["inputs"] == [{"name": "images", "datatype": "FP32", "shape": [-1, 1, 28, 28]}]
    assert {"probabilities", "class_index", "label", "z_score", "steps"} <= {o["name"] for o in metadata["outputs"]}


@pytest.mark.parametrize("binary", [False, True], ids=["json", "binary"])
def test_labels_equal_classify_on_the_same_images(served, triton, binary):
    x = images()
    expected = httpx.post(f"{served.url}/classify", params={"seed": SEED}, files=pngs(x), timeout=60).json()["results"]
    outputs = [httpclient.InferRequestedOutput(name, binary_data=binary)
               for name in ("class_index", "label", "probabilities", "z_score", "flagged")]
    result = triton.infer("tiny", [tensor(x, "UINT8", binary)], outputs=outputs, parameters={"seed": SEED})
    assert result.as_numpy("class_index").tolist() == [r["class_index"] for r in expected]
    assert [label.decode() if binary else label for label in result.as_numpy("label").tolist()] == \
        [r["label"] for r in expected]
    assert np.allclose(result.as_numpy("probabilities"), [r["probabilities"] for r in expected], atol=1e-6)
    assert np.allclose(result.as_numpy("z_score"), [r["purification"]["z_score"] for r in expected])
    assert result.as_numpy("flagged").tolist() == [r["flagged"] for r in expected]


def test_fp32_nhwc_binary_equals_uint8_nchw(triton):
    x = images()
    nhwc = np.ascontiguousarray(x.transpose(0, 2, 3, 1), dtype=np.float32) / 255
    a = triton.infer("tiny", [tensor(x, "UINT8", True)], parameters={"seed": SEED})  # every output binary
    b = triton.infer("tiny", [tensor(nhwc, "FP32", True)], parameters={"seed": SEED})
    assert a.get_response()["outputs"][0]["parameters"]["binary_data_size"] == 3 * 10 * 4
    assert (a.as_numpy("class_index") == b.as_numpy("class_index")).all()
    assert np.array_equal(a.as_numpy("steps"), b.as_numpy("steps"))


def test_purified_images_equal_purify(served, triton):
    x = images(2)
    expected = httpx.post(f"{served.url}/purify", params={"seed": SEED, "variant": "A", "n": 3}, files=pngs(x),
                          timeout=60).json()["results"]
    result = triton.infer("tiny-purify", [tensor(x, "UINT8", True)], parameters={"seed": SEED, "variant": "A", "n": 3})
    purified = result.as_numpy("purified")
    assert purified.dtype == np.uint8 and purified.shape == (2, 1, 28, 28)
    for got, want in zip(purified, expected):
        png = np.asarray(Image.open(io.BytesIO(base64.b64decode(want["image"]))))
        assert np.array_equal(got[0], png)
    assert result.as_numpy("steps").tolist() == [r["steps"] for r in expected]


def refusal(call) -> InferenceServerException:
    with pytest.raises(InferenceServerException) as caught:
        call()
    return caught.value


def test_bad_requests_get_a_clear_400_or_404(served, triton):
    x = images(1)
    wrong_shape = refusal(lambda: triton.infer("tiny", [tensor(x[:, :, :27], "UINT8", True)]))
    assert wrong_shape.status() == "400" and "[B, 1, 28, 28]" in wrong_shape.message()
    wrong_type = refusal(lambda: triton.infer("tiny", [tensor(x.astype(np.int32), "INT32", False)]))
    assert wrong_type.status() == "400" and "INT32" in wrong_type.message()
    unknown = refusal(lambda: triton.infer("nope", [tensor(x, "UINT8", True)]))
    assert unknown.status() == "404" and "tiny-purify" in unknown.message()
    parameter = refusal(lambda: triton.infer("tiny", [tensor(x, "UINT8", True)], parameters={"steps": 3}))
    assert parameter.status() == "400" and "variant, n, seed" in parameter.message()
    assert not triton.is_model_ready("nope")


def test_bad_bodies_from_plain_http_get_400(served):
    header = json.dumps({"inputs": [{"name": "images", "shape": [1, 1, 28, 28], "datatype": "UINT8",
                                     "parameters": {"binary_data_size": 784}}]}).encode()
    url = f"{served.url}/v2/models/tiny/infer"
    short = httpx.post(url, content=header + bytes(700), headers={"Inference-Header-Content-Length": str(len(header))})
    lying = httpx.post(url, content=header + bytes(784), headers={"Inference-Header-Content-Length": str(len(header) + 9)})
    bad_json = httpx.post(url, content=b'{"inputs": [', headers={"content-type": "application/json"})
    for answer in (short, lying, bad_json):
        assert answer.status_code == 400 and answer.json()["error"], answer.text
    assert served.process.poll() is None
