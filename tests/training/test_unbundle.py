"""A bundle's parts go back into a work directory as finished, resumable runs (``apudae unbundle``)."""
import json
from dataclasses import replace

import torch

from apudae.models.bundle import load_bundle
from apudae.models.calibration import Calibration
from apudae.models.classifiers import ImageClassifier
from tests.conftest import make_tiny_nets, write_tiny_photo_bundle
from apudae.training.checkpoint import load_checkpoint
from apudae.training.loops import load_trained, make_optimizer
from apudae.training.provenance import machine_description
from apudae.models.bundle import write_bundle
from apudae.models.model_card import model_card
from apudae.training.recipes import recipe_for
from apudae.training.import_classifier import IMPORT_FILE, imported_preprocessing
from apudae.training.unbundle import unbundle


def _bundle_with_provenance(out):
    dae, classifier = make_tiny_nets()
    _, adversarial = make_tiny_nets(seed=1)
    recipe = recipe_for("mnist").to_dict()
    recipe["dae"], recipe["classifier"] = dae.config.to_dict(), classifier.config.to_dict()
    history = {part: [{"epoch": 1, "train_loss": 1.0}] for part in ("classifier", "dae", "adversarial")}
    provenance = {"data": "random", "dataset": "mnist", "image_size": [28, 28], "splits": {}, "seed": 3,
                  "epochs": {"classifier": 3, "dae": 2, "adversarial": 1},
                  "wall_seconds": {"classifier": 10.0, "dae": 20.0, "adversarial": 30.0},
                  "git_commit": "test", "machine": machine_description(), "recipe": recipe, "history": history}
    write_bundle(out, "tiny", dae, classifier, Calibration.from_errors(torch.linspace(0.005, 0.015, 64)), ["c"] * 10,
                 {"variant": "F"}, provenance, {}, adversarial_classifier=adversarial)
    return load_bundle(out)


def test_every_part_comes_back_as_a_finished_run_with_the_bundle_weights(tmp_path):
    bundle = _bundle_with_provenance(tmp_path / "bundle")
    assert unbundle(bundle, tmp_path / "runs") == ["classifier", "dae", "adversarial"]
    for part, original, epochs in (("classifier", bundle.classifier, 3), ("dae", bundle.dae, 2),
                                   ("adversarial", bundle.adversarial_classifier, 1)):
        model, meta = load_trained(tmp_path / "runs", part)
        assert meta["epoch"] == epochs and meta["seed"] == 3
        assert [{k: v for k, v in record.items() if k != "sigma_max"} for record in meta["history"]] == [
            {"epoch": 1, "train_loss": 1.0}]
        for key, value in original.state_dict().items():
            assert torch.equal(model.state_dict()[key], value), (part, key)
    assert Calibration.from_dict(json.loads((tmp_path / "runs" / "calibration.json").read_text())) == bundle.calibration


def test_the_unbundled_dae_keeps_its_own_config_and_its_noise_by_epoch(tmp_path):
    bundle = _bundle_with_provenance(tmp_path / "bundle")
    bundle.meta["provenance"]["recipe"]["dae"]["sigma_max"] = 0.05  # the classifier's recipe, older than the DAE
    unbundle(bundle, tmp_path / "runs")
    meta = json.loads((tmp_path / "runs" / "dae.json").read_text())
    assert meta["recipe"]["dae"] == bundle.dae.config.to_dict()
    assert [record["sigma_max"] for record in meta["history"]] == [bundle.dae.config.sigma_max]


def test_an_unbundled_run_resumes_into_a_fresh_model_and_optimizer(tmp_path):
    bundle = _bundle_with_provenance(tmp_path / "bundle")
    unbundle(bundle, tmp_path / "runs")
    dae, _ = make_tiny_nets(seed=5)
    recipe = json.loads((tmp_path / "runs" / "dae.json").read_text())["recipe"]
    meta = load_checkpoint(tmp_path / "runs" / "dae", dae.train(), make_optimizer("dae", dae, recipe))
    assert meta["epoch"] == 2
    assert all(torch.equal(dae.state_dict()[k], v) for k, v in bundle.dae.state_dict().items())


def test_the_model_card_lists_the_dae_noise_of_each_epoch_when_it_changed(tmp_path):
    bundle = _bundle_with_provenance(tmp_path / "bundle")
    provenance = bundle.meta["provenance"]
    provenance["history"]["dae"] = [{"epoch": 1, "sigma_max": 0.1}, {"epoch": 2, "sigma_max": 0.25}]
    assert "- DAE training noise sigma_max by epoch: 0.1, 0.25" in model_card(bundle.meta)
    provenance["history"]["dae"] = [{"epoch": 1, "sigma_max": 0.1}, {"epoch": 2, "sigma_max": 0.1}]
    assert "sigma_max by epoch" not in model_card(bundle.meta)


def test_the_model_card_lists_the_classifier_noise_of_each_epoch_when_any_was_used(tmp_path):
    bundle = _bundle_with_provenance(tmp_path / "bundle")
    provenance = bundle.meta["provenance"]
    provenance["history"]["classifier"] = [{"epoch": 1}, {"epoch": 2, "noise_max": 0.1}]
    assert "- Classifier training noise X + s*N(0,1), s ~ U[0, s_max], s_max by epoch: 0.0, 0.1" in model_card(bundle.meta)
    provenance["history"]["classifier"] = [{"epoch": 1}, {"epoch": 2, "noise_max": 0.0}]
    assert "Classifier training noise" not in model_card(bundle.meta)


def test_an_adversarial_baseline_of_another_width_keeps_its_own_config_through_bundle_and_unbundle(tmp_path):
    dae, classifier = make_tiny_nets()
    torch.manual_seed(1)
    adversarial = ImageClassifier(replace(classifier.config, width=2)).eval()
    recipe = recipe_for("mnist").to_dict()
    recipe["dae"], recipe["classifier"] = dae.config.to_dict(), classifier.config.to_dict()
    provenance = {"data": "random", "dataset": "mnist", "image_size": [28, 28], "splits": {}, "seed": 3,
                  "epochs": {"classifier": 3, "dae": 2, "adversarial": 1},
                  "wall_seconds": {"classifier": 10.0, "dae": 20.0, "adversarial": 30.0}, "git_commit": "test",
                  "machine": machine_description(), "recipe": recipe,
                  "history": {part: [] for part in ("classifier", "dae", "adversarial")}}
    meta = write_bundle(tmp_path / "bundle", "tiny", dae, classifier, Calibration.from_errors(torch.rand(8)),
                        ["c"] * 10, {"variant": "F"}, provenance, {}, adversarial_classifier=adversarial)
    assert meta["adversarial_classifier"]["width"] == 2 and meta["classifier"]["width"] == 4
    bundle = load_bundle(tmp_path / "bundle")
    assert bundle.adversarial_classifier.config.width == 2 and bundle.classifier.config.width == 4
    unbundle(bundle, tmp_path / "runs")
    model, run_meta = load_trained(tmp_path / "runs", "adversarial")
    assert run_meta["recipe"]["classifier"]["width"] == 2
    assert all(torch.equal(model.state_dict()[k], v) for k, v in adversarial.state_dict().items())


def test_an_imported_classifier_comes_back_as_its_import(tmp_path):
    write_tiny_photo_bundle(tmp_path / "bundle", tmp_path / "import")
    bundle = load_bundle(tmp_path / "bundle")
    bundle.meta["provenance"].update(epochs={"dae": 1}, wall_seconds={"dae": 1.0}, recipe=recipe_for("imagenet").to_dict(),
                                     history={"dae": [{"epoch": 1, "train_loss": 1.0}]})
    assert unbundle(bundle, tmp_path / "runs") == ["imported classifier", "dae"]
    assert (tmp_path / "runs" / "classifier.onnx").read_bytes() == (tmp_path / "import" / "classifier.onnx").read_bytes()
    record = json.loads((tmp_path / "runs" / IMPORT_FILE).read_text())
    original = json.loads((tmp_path / "import" / IMPORT_FILE).read_text())
    assert record == original
    assert imported_preprocessing(tmp_path / "runs") == bundle.preprocessing
