"""Issue 5 item 5: admin routes need the bearer token (compared in constant time) and are off
without one; model names cannot reach outside the model directory; no pickle is ever loaded;
request, pixel and image limits hold at their boundary; no token or image data reaches the logs.

The Docker image's non-root user is tested in tests/service/test_deploy.py
(test_docker_image_runs_as_a_non_root_user_with_a_healthcheck); its uid is checked here."""
from __future__ import annotations

import base64
import json
import logging
import pickle
import re
from pathlib import Path

import pytest
import torch
from fastapi.testclient import TestClient
from PIL import Image

from reliability_fixtures import ADMIN_TOKEN, admin, client, digit_png, files_field, make_settings, png_bytes  # noqa: F401
from apudae.service.api import deps
from apudae.service.main import create_app

REPO = Path(__file__).resolve().parents[2]
JOB_ID = "0" * 32
ESCAPES = ["../tiny", "..", "/etc/passwd", "tiny/../tiny", "./tiny", "tiny/", "..%2ftiny", "tiny\x00",
           "~/tiny", "\\..\\tiny", "TINY", " tiny"]


def admin_routes(app) -> list[tuple[str, str]]:
    """(method, path) of every operation the OpenAPI schema puts behind the bearer scheme, job ids filled in."""
    return [(method.upper(), path.replace("{job_id}", JOB_ID)) for path, operations in app.openapi()["paths"].items()
            for method, operation in operations.items() if operation.get("security")]


def test_every_admin_route_needs_the_exact_bearer_token(client):
    routes = admin_routes(client.app)
    assert {path for _, path in routes} == {"/evaluate", f"/evaluate/{JOB_ID}"}
    wrong = ["", "Bearer", "Bearer ", f"Bearer {ADMIN_TOKEN[:-1]}", f"Bearer {ADMIN_TOKEN}x", f"bearer{ADMIN_TOKEN}",
             f"Basic {ADMIN_TOKEN}", f"Bearer {ADMIN_TOKEN.upper()}", f"Bearer {'x' * len(ADMIN_TOKEN)}"]
    for method, path in routes:
        for header in wrong:
            answer = client.request(method, path, headers={"Authorization": header} if header else {}, json={})
            assert answer.status_code == 401, (method, path, header, answer.text)
        right = client.request(method, path, headers={"Authorization": f"Bearer {ADMIN_TOKEN}"}, json={"samples": 1})
        assert right.status_code not in (401, 403), (method, path, right.text)


def test_admin_routes_are_off_without_a_configured_token(make_settings):
    with TestClient(create_app(make_settings(admin_token=None))) as client:
        for method, path in admin_routes(client.app):
            for headers in ({}, {"Authorization": f"Bearer {ADMIN_TOKEN}"}, {"Authorization": "Bearer "}):
                assert client.request(method, path, headers=headers, json={}).status_code == 403


def test_the_token_is_compared_in_constant_time(client, admin, monkeypatch):
    calls = []
    compare = deps.secrets.compare_digest

    def spy(a, b):
        calls.append((a, b))
        return compare(a, b)
    monkeypatch.setattr(deps.secrets, "compare_digest", spy)
    assert client.get("/evaluate", headers={"Authorization": "Bearer not-the-token-at-all"}).status_code == 401
    assert client.get("/evaluate", headers=admin).status_code == 200
    assert calls == [(b"not-the-token-at-all", ADMIN_TOKEN.encode()), (ADMIN_TOKEN.encode(), ADMIN_TOKEN.encode())]


@pytest.mark.parametrize("name", ESCAPES)
def test_model_names_cannot_reach_outside_the_model_directory(client, admin, monkeypatch, name):
    def no_loading(*args, **kwargs):
        raise AssertionError("a request made the service load a bundle")
    monkeypatch.setattr("apudae.service.engine.load_bundle", no_loading)
    answer = client.post("/score", params={"model": name}, files=files_field(("a.png", digit_png())))
    assert answer.status_code == 404 and "unknown model" in answer.json()["detail"]
    answer = client.post("/evaluate", json={"model": name, "samples": 1}, headers=admin)
    assert answer.status_code == 404 and "unknown model" in answer.json()["detail"]


@pytest.mark.parametrize("name", ["../tiny", "/etc", "a/b", ".hidden"])
def test_a_default_model_outside_the_directory_is_refused_at_start_up(make_settings, name):
    with pytest.raises(ValueError, match="not a model name"):
        make_settings(default_model=name)


def test_no_pickle_loader_in_the_source_tree():
    pattern = re.compile(r"torch\.load\(|\bpickle\b|\bjoblib\b|\bdill\b|allow_pickle\s*=\s*True|weights_only\s*=\s*False"
                         r"|\bcloudpickle\b|\bshelve\b|\.load_state_dict_from_url|torch\.hub")
    hits = [f"{path.relative_to(REPO)}:{number}: {line.strip()}"
            for folder in ("service", "models", "training") for path in sorted((REPO / folder).rglob("*.py"))
            for number, line in enumerate(path.read_text().splitlines(), 1)
            if pattern.search(line) and "never pickle" not in line and "without pickle" not in line]
    # the one allowed reader: the one-time import of a user's PyTorch weights, with weights_only=True
    one_time_import = [hit for hit in hits if hit.startswith("training/import_classifier.py:")]
    assert len(one_time_import) == 1 and "torch.load(" in one_time_import[0] and "weights_only=True" in one_time_import[0]
    assert [hit for hit in hits if hit not in one_time_import] == []


def test_loading_and_serving_never_unpickles(tiny_models_dir, make_settings, monkeypatch):
    def refuse(*args, **kwargs):
        raise AssertionError("pickle used")
    for target, name in ((pickle, "load"), (pickle, "loads"), (pickle, "Unpickler"), (torch, "load")):
        monkeypatch.setattr(target, name, refuse)
    models = [tiny_models_dir]
    if (REPO / "models" / "mnist" / "bundle.json").is_file():
        models.append(REPO / "models")  # the shipped bundles too
    for model_dir in models:
        with TestClient(create_app(make_settings(model_dir=model_dir))) as client:
            assert client.get("/readyz").status_code == 200
            assert client.post("/classify", files=files_field(("a.png", digit_png()))).status_code == 200


def test_image_count_limit_holds_at_its_boundary(client):
    at_limit = [(f"{i}.png", digit_png(i)) for i in range(8)]  # make_settings: max_images=8
    assert client.post("/score", files=files_field(*at_limit)).status_code == 200
    over = client.post("/score", files=files_field(*at_limit, ("8.png", digit_png(8))))
    assert over.status_code == 422 and "too many images" in over.json()["detail"]


def test_pixel_limit_holds_at_its_boundary(client):
    def image(width, height):
        return files_field(("big.png", png_bytes(Image.new("L", (width, height), 128))))
    assert client.post("/score", params={"resize": "true"}, files=image(256, 256)).status_code == 200
    over = client.post("/score", params={"resize": "true"}, files=image(257, 256))  # max_pixels = 256 * 256
    assert over.status_code == 422 and "65536" in over.json()["detail"]


def test_body_limit_holds_at_its_boundary(client):
    limit = 2 * 2**20  # make_settings: max_body_bytes
    body = json.dumps({"images": [base64.b64encode(digit_png()).decode()]}).encode()
    padded = body[:-1] + b" " * (limit - len(body)) + b"}"
    assert len(padded) == limit
    assert client.post("/score", content=padded, headers={"content-type": "application/json"}).status_code == 200
    over = client.post("/score", content=padded + b" ", headers={"content-type": "application/json"})
    assert over.status_code == 413


def test_no_token_or_image_data_in_the_logs(client, admin, caplog, monkeypatch):
    wrong_token = "wrong-secret-token-5f2a9c"
    marker = b"SECRET-PIXELS-7d1e"
    image = digit_png(3)
    with caplog.at_level(logging.DEBUG):
        client.get("/evaluate", headers=admin)
        client.get("/evaluate", headers={"Authorization": f"Bearer {wrong_token}"})
        client.post("/evaluate", json={"samples": 1, "reduced_reason": wrong_token}, headers=admin)
        client.post("/score", files=files_field(("a.png", image)), headers=admin)
        client.post("/score", json={"images": [base64.b64encode(image).decode()]}, headers=admin)
        client.post("/score", files=files_field(("bad.png", marker * 10)))
        client.post("/score", files=files_field(("cut.png", image[:60] + marker)))
        runtime = client.app.state.service.model(None)
        monkeypatch.setattr(runtime, "score", lambda images: 1 / 0)  # a failing batch logs its traceback
        assert client.post("/score", files=files_field(("a.png", image)), headers=admin).status_code == 500
    text = caplog.text
    assert caplog.records  # something was logged, so the check means something
    for secret in (ADMIN_TOKEN, wrong_token, marker.decode(), base64.b64encode(image).decode()[20:60]):
        assert secret not in text
    ours = [r for r in caplog.records if r.name.split(".")[0] in ("apudae", "uvicorn", "fastapi")]
    assert not any(isinstance(arg, (bytes, torch.Tensor)) for r in ours for arg in (r.args or ()))


def test_the_docker_user_has_a_non_zero_uid():
    lines = (REPO / "Dockerfile").read_text().splitlines()
    user = [line.split()[1] for line in lines if line.startswith("USER ")][-1]
    created = [line for line in lines if "useradd" in line and line.rstrip("\\ ").endswith(user)]
    assert created and int(re.search(r"--uid (\d+)", created[0]).group(1)) > 0
