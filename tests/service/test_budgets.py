"""Per-budget purification settings (bundle.json ``purification_budgets``): a request's ``budget=ε`` takes them,
over /purify, /classify and /v2; an unknown budget is a clear 4xx; a bad entry fails when the bundle loads."""
from __future__ import annotations

import argparse
import json
from dataclasses import replace
from pathlib import Path

import pytest
import torch
from fastapi.testclient import TestClient

from apudae.models.bundle import BundleError, load_bundle
from apudae.models.model_card import model_card
from apudae.service.main import create_app
from apudae.training.data import ImageSet
from apudae.training.evaluation import evaluate
from apudae.training.evaluation.harness import Evaluation
from conftest import write_tiny_bundle
from service_fixtures import digit_png, make_settings  # noqa: F401 (pytest fixtures)
from test_v2_protocol import images, json_request, outputs, refused

BUDGETS = {"0.3": {"variant": "B", "n": 2}}  # B takes all n steps: the steps say which settings ran


def _with_budgets(out: Path, budgets: dict) -> Path:
    write_tiny_bundle(out)
    meta = json.loads((out / "bundle.json").read_text())
    (out / "bundle.json").write_text(json.dumps({**meta, "purification_budgets": budgets}))
    return out


@pytest.fixture
def budget_client(make_settings, tmp_path):
    _with_budgets(tmp_path / "models" / "tiny", BUDGETS)
    with TestClient(create_app(make_settings(model_dir=tmp_path / "models")), raise_server_exceptions=False) as c:
        yield c


def _uploads(count: int = 3) -> list:
    return [("files", (f"{i}.png", digit_png(i), "image/png")) for i in range(count)]


def test_a_budget_overrides_the_defaults_and_nothing_else(tmp_path):
    bundle = load_bundle(_with_budgets(tmp_path / "tiny", BUDGETS))
    assert bundle.purification_budgets == {0.3: {"variant": "B", "n": 2}}
    assert bundle.purification_for(None) == bundle.purification_defaults
    assert bundle.purification_for(0.3) == {**bundle.purification_defaults, "variant": "B", "n": 2}
    with pytest.raises(ValueError, match=r"budget 0.2 has no tuned settings .* \(shipped budgets: 0.3\)"):
        bundle.purification_for(0.2)


def test_a_bad_budget_entry_fails_when_the_bundle_loads(tmp_path):
    with pytest.raises(BundleError, match=r"purification_budgets 0.3: unknown purification settings \['steps'\]"):
        load_bundle(_with_budgets(tmp_path / "tiny", {"0.3": {"steps": 45}}))


def test_purify_and_classify_take_the_budgets_settings(budget_client):
    models = budget_client.get("/models").json()["models"][0]
    assert models["purification_budgets"] == BUDGETS
    default = budget_client.post("/purify", files=_uploads()).json()
    assert (default["variant"], default["n"]) == ("F", 3)
    budgeted = budget_client.post("/purify", params={"budget": 0.3}, files=_uploads()).json()
    assert (budgeted["variant"], budgeted["n"]) == ("B", 2)
    assert [r["steps"] for r in budgeted["results"]] == [2, 2, 2]
    classified = budget_client.post("/classify", params={"budget": "0.3", "n": 1}, files=_uploads()).json()
    assert [r["purification"]["steps"] for r in classified["results"]] == [1, 1, 1]  # n still overrides


def test_models_and_v2_metadata_spell_a_budget_as_the_bundle_parses_it(make_settings, tmp_path):
    _with_budgets(tmp_path / "models" / "tiny", {"0.30": {"n": 2}})
    with TestClient(create_app(make_settings(model_dir=tmp_path / "models"))) as client:
        assert client.get("/models").json()["models"][0]["purification_budgets"] == {"0.3": {"n": 2}}
        metadata = client.get("/v2/models/tiny").json()["parameters"]
        assert metadata["purification_budgets"] == {"0.3": {"n": 2}}
        assert client.post("/purify", params={"budget": 0.3}, files=_uploads(1)).json()["n"] == 2


@pytest.mark.parametrize("budget, words", [(0.2, ["budget 0.2", "shipped budgets: 0.3"]), (0, ["budget"]),
                                           ("eps", ["budget"])])
def test_an_unknown_or_invalid_budget_is_a_422_that_says_so(budget_client, budget, words):
    answer = budget_client.post("/purify", params={"budget": budget}, files=_uploads(1))
    assert answer.status_code == 422, answer.text
    assert all(word in answer.text for word in words), answer.text


def test_v2_requests_take_a_budget_parameter(budget_client):
    answer = budget_client.post("/v2/models/tiny-purify/infer", json=json_request(images(2), parameters={"budget": 0.3}))
    assert answer.status_code == 200, answer.text
    assert outputs(answer)["steps"]["data"] == [2, 2]
    metadata = budget_client.get("/v2/models/tiny").json()
    assert metadata["parameters"]["purification_budgets"] == BUDGETS and "budget" in metadata["parameters"]["request_parameters"]
    refused(budget_client.post("/v2/models/tiny/infer", json=json_request(images(1), parameters={"budget": 0.2})),
            400, "budget 0.2", "shipped budgets: 0.3")


def test_the_model_card_names_each_budget_and_the_detector_thresholds(tmp_path):
    meta = load_bundle(_with_budgets(tmp_path / "tiny", BUDGETS)).meta
    card = model_card(meta)
    assert '- Purification for attack budget ε = 0.3 (request `budget=0.3`): the defaults with {"variant": "B", "n": 2}.' in card
    assert "- Detector: flags an image whose error_before exceeds" in card or "- Detector: none calibrated" in card


def test_evaluate_starts_from_the_budgets_settings(tmp_path):
    path = _with_budgets(tmp_path / "tiny", BUDGETS)
    parser = argparse.ArgumentParser()
    evaluate.add_arguments(parser)
    args = parser.parse_args(["--bundle", str(path), "--budget", "0.3", "--alpha", "0.02", "--out", str(tmp_path / "out")])
    config = evaluate.config_from_args(args)
    data = ImageSet(torch.rand(2, 1, 28, 28).mul(255).to(torch.uint8), torch.zeros(2, dtype=torch.long), ["c"] * 10)
    settings = Evaluation(config, data).settings
    assert (settings.variant, settings.n, settings.alpha) == ("B", 2, 0.02)
    assert Evaluation(replace(config, budget=None), data).settings.n == 3
    with pytest.raises(ValueError, match="budget 0.1 has no tuned settings"):
        Evaluation(replace(config, budget=0.1), data)
