"""Issue 5 item 1: every file of the committed corpus gets its documented answer on every image
route — 422 with a message naming the problem, or 200 with the conversion docs/SERVICE.md states —
and every v2 request body of ``corpus/v2`` its answer on both v2 models of the bundle: 400 with the
protocol's ``{"error": ...}`` naming the problem, or 200. Never a 5xx. Regenerate the corpus with
``python tests/reliability/make_corpus.py``."""
from __future__ import annotations

import io

import pytest
from PIL import Image

from reliability_fixtures import (BadFile, BadRequest, bad_files, bad_requests, client, digit_png,  # noqa: F401
                                  files_field, make_settings)
from apudae.service.imaging import decode_image

ROUTES = ("/score", "/purify", "/classify")
SHAPE = (1, 28, 28)
MAX_PIXELS = 256 * 256  # make_settings' limit, which the corpus is built against
CORPUS = bad_files()
REQUESTS = bad_requests()
V2_MODELS = ("tiny", "tiny-purify")


@pytest.mark.parametrize("bad", CORPUS, ids=[f.name for f in CORPUS])
def test_each_route_gives_the_documented_answer(client, bad: BadFile):
    for route in ROUTES:
        answer = client.post(route, files=files_field((bad.name, bad.data)))  # image/png, whatever it holds
        assert answer.status_code == bad.status, f"{route}: {answer.text}"
        assert answer.headers["content-type"].startswith("application/json")
        if bad.words is not None:
            assert bad.words in answer.json()["detail"] and bad.name in answer.json()["detail"]
        else:
            assert len(answer.json()["results"]) == 1


@pytest.mark.parametrize("bad", [f for f in CORPUS if f.mean is not None], ids=lambda f: f.name)
def test_converted_files_hold_the_documented_pixels(bad: BadFile):
    pixels = decode_image(bad.data, bad.name, SHAPE, False, MAX_PIXELS).pixels
    assert pixels.shape == SHAPE and 0 <= pixels.min() and pixels.max() <= 1
    assert pixels.mean().item() == pytest.approx(bad.mean, abs=0.02)
    if bad.top_half_mean is not None:  # EXIF orientation applied: the stored left half is now on top
        assert pixels[:, : SHAPE[1] // 2].mean().item() == pytest.approx(bad.top_half_mean, abs=0.02)


@pytest.mark.parametrize("bad", [f for f in CORPUS if f.words == "resize=true"], ids=lambda f: f.name)
def test_wrong_sizes_are_resized_on_request_and_answered_at_their_own_size(client, bad: BadFile):
    answer = client.post("/purify", params={"resize": "true"}, files=files_field((bad.name, bad.data)),
                         headers={"Accept": "image/png"})
    assert answer.status_code == 200, answer.text
    assert answer.headers["content-type"] == "image/png"
    assert Image.open(io.BytesIO(answer.content)).size == Image.open(io.BytesIO(bad.data)).size


def test_one_bad_file_among_good_ones_refuses_the_request_and_names_it(client):
    bad = next(f for f in CORPUS if f.name == "truncated.png")
    payloads = [("good0.png", digit_png(0)), (bad.name, bad.data), ("good1.png", digit_png(1))]
    answer = client.post("/classify", files=files_field(*payloads))
    assert answer.status_code == 422 and bad.name in answer.json()["detail"]
    assert client.post("/classify", files=files_field(*payloads[::2])).status_code == 200


@pytest.mark.parametrize("bad", REQUESTS, ids=[r.name for r in REQUESTS])
def test_each_v2_request_gets_the_documented_answer(client, bad: BadRequest):
    headers = {} if bad.header_length is None else {"Inference-Header-Content-Length": str(bad.header_length)}
    for model in V2_MODELS:
        answer = client.post(f"/v2/models/{model}/infer", content=bad.body, headers=headers)
        assert answer.status_code == bad.status, f"{model}: {answer.text}"
        if bad.words is not None:
            assert bad.words in answer.json()["error"], answer.text
        else:
            assert answer.json()["model_name"] == model and answer.json()["outputs"]
