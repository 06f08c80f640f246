"""Settings: environment, command-line overrides, and bad values refused at start-up."""
from __future__ import annotations

import argparse
import logging
import threading

import pytest
from fastapi.testclient import TestClient
from pydantic import ValidationError

from apudae.service import serve
from apudae.service.main import create_app
from apudae.service.settings import Settings
from service_fixtures import digit_png, make_settings  # noqa: F401 (pytest fixtures)


def parse(*argv: str) -> argparse.Namespace:
    parser = argparse.ArgumentParser()
    serve.add_arguments(parser)
    return parser.parse_args(argv)


def test_environment_is_read(monkeypatch, tiny_models_dir):
    monkeypatch.setenv("APUDAE_MODEL_DIR", str(tiny_models_dir))
    monkeypatch.setenv("APUDAE_MAX_BATCH_SIZE", "4")
    settings = Settings()
    assert settings.max_batch_size == 4 and settings.model_dir == tiny_models_dir


@pytest.mark.parametrize("overrides, words", [
    ({"max_batch_size": 0}, "greater than 0"),
    ({"request_deadline": -1}, "greater than 0"),
    ({"device": "tpu"}, "not one of auto"),
    ({"device": "cuda:7"}, "no such device"),
    ({"admin_token": "short"}, "at least 16"),
    ({"default_model": "../x"}, "not a model name"),
    ({"max_images": 500, "max_queue_size": 10}, "max_queue_size"),
    ({"log_level": "loud"}, "log level"),
])
def test_bad_values_are_refused(tiny_models_dir, overrides, words):
    with pytest.raises(ValidationError, match=words):
        Settings(model_dir=tiny_models_dir, **overrides)


def test_missing_model_dir_is_refused(tmp_path):
    with pytest.raises(ValidationError, match="does not exist"):
        Settings(model_dir=tmp_path / "nope")


def test_serve_exits_2_with_a_clear_message_on_bad_settings(tmp_path, caplog):
    with caplog.at_level(logging.ERROR):
        assert serve.run(parse("--model-dir", str(tmp_path / "nope"), "--port", "0")) == 2
    assert "model directory" in caplog.text and "does not exist" in caplog.text


def test_command_line_overrides_the_environment(monkeypatch, tiny_models_dir):
    monkeypatch.setenv("APUDAE_MAX_QUEUE_SIZE", "100")
    args = parse("--model-dir", str(tiny_models_dir), "--max-queue-size", "77")
    overrides = {k: v for k, v in vars(args).items() if v is not None}
    assert Settings(**overrides).max_queue_size == 77


def test_unknown_default_model_fails_start_up(make_settings):
    with pytest.raises(RuntimeError, match="default model 'other'"):
        with TestClient(create_app(make_settings(default_model="other"))):
            pass


def test_a_broken_bundle_is_left_out_and_the_others_serve(make_settings, tiny_models_dir, tmp_path, caplog):
    models = tmp_path / "models"
    models.mkdir()
    (models / "tiny").symlink_to(tiny_models_dir / "tiny")
    broken = models / "broken"
    broken.mkdir()
    (broken / "bundle.json").write_text('{"name": "broken", "files": {"dae.safetensors": "00"}}')
    with caplog.at_level(logging.ERROR), TestClient(create_app(make_settings(model_dir=models))) as client:
        assert [m["name"] for m in client.get("/models").json()["models"]] == ["tiny"]
        assert client.get("/readyz").status_code == 200
    assert "model broken left out" in caplog.text


def test_no_loadable_model_fails_start_up(make_settings, tmp_path):
    with pytest.raises(RuntimeError, match="no model could be loaded"):
        with TestClient(create_app(make_settings(model_dir=tmp_path))):
            pass


def test_the_models_load_on_the_thread_that_computes_the_batches(make_settings, monkeypatch):
    from apudae.service import engine, state

    threads = {}
    original_load, original_classify = engine.load_models, engine.ModelRuntime.classify

    def load(*args, **kwargs):
        threads["load"] = threading.get_ident()
        return original_load(*args, **kwargs)

    def classify(self, *args, **kwargs):
        threads["batch"] = threading.get_ident()
        return original_classify(self, *args, **kwargs)

    monkeypatch.setattr(state, "load_models", load)
    monkeypatch.setattr(engine.ModelRuntime, "classify", classify)
    with TestClient(create_app(make_settings())) as client:
        png = digit_png(0)
        assert client.post("/classify", files=[("files", ("0.png", png, "image/png"))]).status_code == 200
    assert threads["load"] == threads["batch"] != threading.get_ident()
