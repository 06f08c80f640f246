"""What every route shares: unknown query parameters refused, the access log, offline /docs, the batch
operations derived from their names; and /classify's top 5 on a bundle with more than 10 classes."""
from __future__ import annotations

import asyncio
import logging
import re
from html.parser import HTMLParser
from urllib.parse import urlsplit

import pytest
import torch
from fastapi.testclient import TestClient

from service_fixtures import ADMIN_TOKEN, admin, client, digit_png, make_settings  # noqa: F401 (pytest fixtures)
from apudae.service.main import create_app
from apudae.service.middleware import ACCESS_LOGGER
from apudae.service.settings import Settings
from apudae.service.state import OPERATIONS


def files(*pngs: bytes) -> list:
    return [("files", (f"{i}.png", png, "image/png")) for i, png in enumerate(pngs)]


def test_a_misspelt_option_is_refused_naming_it_and_the_valid_ones(client):
    answer = client.post("/classify?modle=cifar10", files=files(digit_png(0)))
    assert answer.status_code == 422, answer.text
    body = answer.json()
    assert "'modle'" in body["detail"]
    for valid in ("model", "resize", "variant", "n", "seed", "purify"):
        assert re.search(rf"\b{valid}\b", body["detail"].split("takes:")[1])
    assert body["errors"] == [{"loc": ["query", "modle"], "msg": body["errors"][0]["msg"], "type": "extra_forbidden"}]


@pytest.mark.parametrize("method, path, takes", [
    ("get", "/healthz", "none"), ("get", "/readyz", "none"), ("get", "/metrics", "none"),
    ("get", "/models", "none"), ("post", "/score", "model, resize"), ("post", "/purify", "model, resize, variant"),
    ("get", "/evaluate", "none"), ("get", "/evaluate/" + "0" * 32, "none"), ("get", "/docs", "none")])
def test_every_route_refuses_query_parameters_it_does_not_declare(client, admin, method, path, takes):
    answer = getattr(client, method)(path, params={"bogus": "1"}, headers=admin)
    assert answer.status_code == 422, answer.text
    assert answer.json()["detail"].startswith("invalid query.bogus: unknown query parameter 'bogus'")
    assert f"takes: {takes}" in answer.json()["detail"]


def test_declared_query_parameters_still_work(client):
    answer = client.post("/classify", params={"model": "tiny", "purify": "false", "resize": "true"},
                         files=files(digit_png(1, size=(30, 30))))
    assert answer.status_code == 200, answer.text


class _Assets(HTMLParser):
    """Every src/href of a page."""

    def __init__(self) -> None:
        super().__init__()
        self.urls: list[str] = []

    def handle_starttag(self, tag, attrs) -> None:
        self.urls += [value for name, value in attrs if name in ("src", "href") and value]


@pytest.mark.parametrize("page", ["/docs", "/redoc"])
def test_the_docs_pages_need_no_other_host(client, page):
    answer = client.get(page)
    assert answer.status_code == 200
    assert not re.search(r"(https?:)?//[\w.-]+\.\w+", answer.text), "the page names another host"
    parser = _Assets()
    parser.feed(answer.text)
    urls = parser.urls + re.findall(r"url: ?'([^']+)'", answer.text)  # the openapi.json the page loads
    assert any(u.endswith(".js") for u in urls) and (page == "/redoc" or any(u.endswith(".css") for u in urls))
    for url in urls:
        assert not urlsplit(url).netloc
        assert client.get(url).status_code == 200, url


def _access_lines(caplog) -> list[logging.LogRecord]:
    return [r for r in caplog.records if r.name == ACCESS_LOGGER]


def test_each_request_logs_one_access_line(client, caplog):
    caplog.set_level(logging.INFO, logger=ACCESS_LOGGER)
    answer = client.post("/classify?seed=3", files=files(digit_png(2)), headers={"X-Request-ID": "req-42"})
    assert answer.status_code == 200 and answer.headers["X-Request-ID"] == "req-42"
    (record,) = _access_lines(caplog)
    line = record.getMessage()
    assert re.fullmatch(r'testclient:\d+ - "POST /classify HTTP/1\.1" 200 latency_ms=\d+\.\d '
                        r'request_id=req-42 model=tiny', line), line
    assert (record.method, record.path, record.status, record.model) == ("POST", "/classify", 200, "tiny")
    assert record.latency_ms >= 0


def test_errors_are_logged_too_with_a_fresh_request_id(client, caplog):
    caplog.set_level(logging.INFO, logger=ACCESS_LOGGER)
    answers = [client.post("/classify?model=nope", files=files(digit_png(2))),  # 404 from the route
               client.get("/no-such-route"),  # 404 before routing
               client.post("/score", content=b"x" * (3 * 2**20), headers={"Content-Type": "application/json"}),
               client.get("/models", headers={"X-Request-ID": "bad id\nforged line"})]
    assert [a.status_code for a in answers] == [404, 404, 413, 200]
    records = _access_lines(caplog)
    assert [(r.method, r.path, r.status, r.model) for r in records] == [
        ("POST", "/classify", 404, "-"), ("GET", "/no-such-route", 404, "-"), ("POST", "/score", 413, "-"),
        ("GET", "/models", 200, "-")]
    assert re.fullmatch(r"[0-9a-f]{32}", records[-1].request_id) and "forged" not in caplog.text
    assert len({r.request_id for r in records}) == 4


def test_the_access_log_holds_no_token_and_no_query_value(client, admin, caplog):
    caplog.set_level(logging.DEBUG)
    secret = "query-secret-value-0123"
    client.get("/evaluate", headers=admin)
    client.get(f"/evaluate?token={secret}", headers=admin)
    client.get(f"/evaluate?token={ADMIN_TOKEN}", headers={"Authorization": "Bearer wrong-token-0123456789"})
    client.post("/classify", params={"seed": 123456789}, files=files(digit_png(3)))
    records = _access_lines(caplog)
    assert [r.status for r in records] == [200, 422, 422, 200]
    logged = " ".join(f"{r.getMessage()} {vars(r)}" for r in records)  # the test client logs its own URLs
    assert ADMIN_TOKEN not in logged and secret not in logged and "123456789" not in logged
    assert "wrong-token" not in logged and "Bearer" not in logged
    assert "/evaluate " in records[1].getMessage() and "token" not in records[1].getMessage()
    assert records[0].model == "-" and records[-1].model == "tiny"


def test_the_access_log_can_be_turned_off(make_settings, caplog):
    caplog.set_level(logging.INFO, logger=ACCESS_LOGGER)
    with TestClient(create_app(make_settings(access_log=False))) as off:
        assert off.get("/healthz").status_code == 200 and "X-Request-ID" not in off.headers
    assert not _access_lines(caplog)


def test_the_access_log_setting_reads_the_environment(monkeypatch, tiny_models_dir):
    monkeypatch.setenv("APUDAE_ACCESS_LOG", "false")
    assert Settings(model_dir=tiny_models_dir).access_log is False


def test_the_batch_function_follows_from_the_operation_name(client):
    state = client.app.state.service
    runtime = state.models["tiny"]
    images = torch.rand(2, 1, 28, 28, generator=torch.Generator().manual_seed(0))
    settings = runtime.default_settings(n=1, seed=0)
    run = client.portal.call
    scored = run(state.run, runtime, "score", None, images)
    purified = run(state.run, runtime, "purify", settings, images)
    classified = run(state.run, runtime, "classify", settings, images)
    assert [s.error for s in scored] == [s.error for s in runtime.score(images)]
    assert [p.steps for p in purified] == [p.steps for p in runtime.purify(images, settings)]
    assert [c.probabilities for c in classified] == [c.probabilities for c in runtime.classify(images, settings)]
    assert set(OPERATIONS) == {"purify", "classify", "score"}
    with pytest.raises(KeyError):
        run(state.run, runtime, "delete", None, images)


def test_classify_answers_no_top5_for_ten_classes(client):
    (result,) = client.post("/classify", files=files(digit_png(4))).json()["results"]
    assert result["top5"] is None


@pytest.fixture
def photo_client(photo_models_dir, tmp_path):
    settings = Settings(model_dir=photo_models_dir, device="cpu", max_batch_size=8, max_batch_wait=0.01,
                        max_queue_size=64, max_images=8, eval_dir=tmp_path / "evaluations")
    with TestClient(create_app(settings), raise_server_exceptions=False) as photo:
        yield photo


def test_classify_answers_the_top5_of_a_bundle_with_more_than_ten_classes(photo_client):
    photos = [digit_png(seed, size=(32, 32), mode="RGB") for seed in (5, 6)]
    for purify in ("true", "false"):
        answer = photo_client.post(f"/classify?purify={purify}", files=files(*photos))
        assert answer.status_code == 200, answer.text
        for result in answer.json()["results"]:
            probabilities, top = result["probabilities"], result["top5"]
            assert len(probabilities) == 12 and len(top) == 5
            expected = sorted(range(12), key=lambda i: -probabilities[i])[:5]
            assert [t["class_index"] for t in top] == expected
            assert [t["probability"] for t in top] == sorted((probabilities[i] for i in expected), reverse=True)
            assert all(t["label"] == f"photo class {t['class_index']}" for t in top)
            assert (top[0]["class_index"], top[0]["label"]) == (result["class_index"], result["label"])


def test_serve_help_says_each_default_once_and_as_the_code_does(capsys):
    import argparse

    from apudae.service.serve import add_arguments

    parser = argparse.ArgumentParser()
    add_arguments(parser)
    text = " ".join(parser.format_help().split())
    assert "default None" not in text
    assert "(default: mnist when loaded, else the first bundle loaded, by directory name)" in text
    assert "--access-log true|false" in text and "APUDAE_ACCESS_LOG; default True" in text
    assert "APUDAE_ADMIN_TOKEN; default unset" in text


def test_the_default_model_is_mnist_when_loaded_else_the_first_by_directory_name(tmp_path):
    from conftest import write_tiny_bundle

    for name in ("zeta", "alpha"):
        write_tiny_bundle(tmp_path / "one" / name, name=name)
    write_tiny_bundle(tmp_path / "two" / "zz", name="mnist")
    write_tiny_bundle(tmp_path / "two" / "aa", name="aa")
    for models, default in ((tmp_path / "one", "alpha"), (tmp_path / "two", "mnist")):
        settings = Settings(model_dir=models, device="cpu", eval_dir=tmp_path / "evaluations")
        with TestClient(create_app(settings)) as test_client:
            assert test_client.get("/models").json()["default"] == default


def test_a_method_the_route_does_not_take_is_405_in_the_error_format(client):
    answer = client.get("/classify")
    assert answer.status_code == 405 and set(answer.json()) == {"detail"}
