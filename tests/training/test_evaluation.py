"""The benchmark harness: accuracy arithmetic (last partial batch included), Wilson intervals, outputs."""
from __future__ import annotations

import argparse
import json
from dataclasses import replace

import pytest
import torch

from apudae.models.bundle import load_bundle
from apudae.service import cli as apudae_cli
from apudae.training.data import ImageSet
from apudae.training.evaluation import evaluate, tune
from apudae.training.evaluation.config import EvaluationConfig
from apudae.training.evaluation.harness import Evaluation, run_evaluation
from apudae.training.evaluation.stats import Tally, wilson_interval


def test_wilson_interval_known_values():
    low, high = wilson_interval(5, 10)
    assert (round(low, 4), round(high, 4)) == (0.2366, 0.7634)
    assert wilson_interval(0, 0) == (0.0, 1.0)
    low, high = wilson_interval(10, 10)
    assert high == pytest.approx(1.0) and round(low, 4) == 0.7225


def test_tally_counts_images_not_batch_means():
    tally = Tally()
    tally.add(0.1, "F", "fgsm", "grey-box", correct=4, total=5)
    tally.add(0.1, "F", "fgsm", "grey-box", correct=1, total=2)  # the last, partial batch
    (cell,) = tally.to_list()
    assert (cell["correct"], cell["total"]) == (5, 7)
    assert cell["accuracy"] == pytest.approx(5 / 7)  # not (0.8 + 0.5) / 2
    assert cell["purification_steps_per_image"] is None  # no steps given: a defence that does not purify


def test_tally_averages_purification_steps_over_every_image():
    tally = Tally()
    tally.add(0.1, "F", "fgsm", "grey-box", correct=4, total=5, steps=15)
    tally.add(0.1, "F", "fgsm", "grey-box", correct=1, total=2, steps=6)
    (cell,) = tally.to_list()
    assert cell["purification_steps_per_image"] == pytest.approx(21 / 7)


@pytest.fixture
def seven_images(tiny_models_dir) -> ImageSet:
    """7 images labelled so that the tiny classifier is right on exactly images 0, 4 and 6."""
    images = (torch.rand(7, 1, 28, 28, generator=torch.Generator().manual_seed(0)) * 255).to(torch.uint8)
    bundle = load_bundle(tiny_models_dir / "tiny")
    with torch.no_grad():
        preds = bundle.classifier(images.float() / 255).argmax(1)
    labels = (preds + 1) % 10
    labels[[0, 4, 6]] = preds[[0, 4, 6]]
    return ImageSet(images, labels, bundle.classes)


def test_clean_accuracy_counts_the_last_partial_batch(tiny_models_dir, seven_images, tmp_path):
    seen = []
    config = EvaluationConfig(bundle=str(tiny_models_dir / "tiny"), attacks=("fgsm",), samples=None,
                              batch_size=3, epsilons=(0.1,), out=str(tmp_path))
    summary = run_evaluation(config, lambda done, total: seen.append((done, total)), data=seven_images)
    assert seen == [(0, 3), (1, 3), (2, 3), (3, 3)]  # batches of 3, 3 and 1
    clean = {c["defence"]: c for c in summary["cells"] if c["attack"] == "clean"}
    assert (clean["none"]["correct"], clean["none"]["total"]) == (3, 7)
    assert clean["none"]["accuracy"] == pytest.approx(3 / 7)
    assert all(c["total"] == 7 for c in summary["cells"])
    assert {c["threat_model"] for c in summary["cells"]} == {"grey-box"}
    written = json.loads((tmp_path / "results.json").read_text())
    assert written["cells"] == json.loads(json.dumps(summary["cells"]))
    steps = {(c["defence"], c["attack"]): c["purification_steps_per_image"] for c in summary["cells"]}
    assert steps[("none", "clean")] is None and steps[("direct", "fgsm")] == 0
    variant = summary["purification"]["variant"]
    assert all(0 <= steps[(variant, a)] <= summary["purification"]["n"] for a in ("clean", "fgsm"))
    assert "| fgsm |" in (tmp_path / "results.md").read_text()
    assert "Purification steps per image" in (tmp_path / "results.md").read_text()
    assert (tmp_path / "gallery.png").is_file() and (tmp_path / "error_histograms.png").is_file()


def test_cli_builds_the_config_and_runs(tiny_models_dir, seven_images, tmp_path, monkeypatch, capsys):
    parser = argparse.ArgumentParser()
    evaluate.add_arguments(parser)
    args = parser.parse_args(["--bundle", str(tiny_models_dir / "tiny"), "--variant", "E", "--attacks",
                              "random,counter-a", "--compare", "A, D", "--epsilon", "0.05", "0.1",
                              "--samples", "0", "--n", "2", "--no-quantize", "--out", str(tmp_path)])
    config = evaluate.config_from_args(args)
    assert config.epsilons == (0.05, 0.1) and config.purify == {"n": 2} and not config.quantize
    assert config.samples is None and config.compare == ("A", "D")
    monkeypatch.setattr(evaluate, "run_evaluation",
                        lambda cfg, progress, resume: run_evaluation(cfg, progress, data=seven_images, resume=resume))
    assert evaluate.run(args) == 0
    assert (tmp_path / "accuracy_vs_epsilon.png").is_file()
    assert "adaptive" in capsys.readouterr().out


class Stop(Exception):
    """Stands for a run killed part way."""


def _outcome(summary: dict) -> list[tuple]:
    """What a run measured, without its timings."""
    return [(c["defence"], c["attack"], c["correct"], c["total"], c["purification_steps_per_image"])
            for c in summary["cells"]]


def test_a_resumed_run_ends_with_the_numbers_of_an_uninterrupted_one(tiny_models_dir, seven_images, tmp_path):
    config = EvaluationConfig(bundle=str(tiny_models_dir / "tiny"), variant="F", purify={"gamma": 0.1},
                              attacks=("random", "pgd-eot"), samples=None, batch_size=3, epsilons=(0.1, 0.2),
                              adaptive_steps=2, adaptive_eot=2, reduced_reason="a test", out=str(tmp_path / "a"))
    whole = Evaluation(config, seven_images)
    whole_summary = whole.run()

    def stop_after_two(done: int, total: int) -> None:
        if done == 2:
            raise Stop

    stopped = replace(config, out=str(tmp_path / "b"))
    with pytest.raises(Stop):
        run_evaluation(stopped, stop_after_two, data=seven_images)
    assert (tmp_path / "b" / "checkpoint.safetensors").is_file()
    seen = []
    resumed = Evaluation(stopped, seven_images)
    summary = resumed.run(lambda done, total: seen.append(done), resume=True)
    assert seen == [2, 3, 4, 5, 6]  # 2 epsilons x 3 batches, the first two not run again
    assert _outcome(summary) == _outcome(whole_summary)
    # the purifier's errors on the attacked images of the third batch depend on the attacks' random draws
    assert dict(resumed.artifacts.errors) == dict(whole.artifacts.errors)


def test_the_checkpoint_is_removed_once_the_results_are_written(tiny_models_dir, seven_images, tmp_path):
    config = EvaluationConfig(bundle=str(tiny_models_dir / "tiny"), attacks=("random",), samples=None,
                              batch_size=3, out=str(tmp_path))
    seen = []
    run_evaluation(config, lambda done, total: seen.append((tmp_path / "checkpoint.safetensors").is_file()), data=seven_images)
    assert seen == [False, True, True, True]
    assert not (tmp_path / "checkpoint.safetensors").exists() and (tmp_path / "results.json").is_file()


def test_resume_refuses_a_checkpoint_of_other_settings(tiny_models_dir, seven_images, tmp_path):
    config = EvaluationConfig(bundle=str(tiny_models_dir / "tiny"), attacks=("random",), samples=None,
                              batch_size=3, out=str(tmp_path))

    def stop(done: int, total: int) -> None:
        if done == 1:
            raise Stop

    with pytest.raises(Stop):
        run_evaluation(config, stop, data=seven_images)
    with pytest.raises(ValueError, match="other settings \\(seed\\)"):
        run_evaluation(replace(config, seed=1), data=seven_images, resume=True)
    assert _outcome(run_evaluation(config, data=seven_images))  # without --resume: starts over


def test_the_cli_says_what_to_fix_instead_of_a_traceback(tiny_models_dir, seven_images, tmp_path):
    parser = argparse.ArgumentParser()
    evaluate.add_arguments(parser)
    common = ["--bundle", str(tiny_models_dir / "tiny"), "--samples", "0", "--batch-size", "3", "--out", str(tmp_path)]
    with pytest.raises(SystemExit, match="apudae evaluate: error: unknown attacks"):
        evaluate.run(parser.parse_args([*common, "--attacks", "nope"]))

    def stop(done: int, total: int) -> None:
        if done == 1:
            raise Stop

    with pytest.raises(Stop):
        run_evaluation(evaluate.config_from_args(parser.parse_args([*common, "--attacks", "random"])), stop,
                       data=seven_images)
    with pytest.raises(SystemExit, match="other settings \\(seed\\)"):
        evaluate.run(parser.parse_args([*common, "--attacks", "random", "--seed", "1", "--resume"]))


def test_config_rejects_unknown_names(tiny_models_dir):
    with pytest.raises(ValueError, match="unknown attacks"):
        EvaluationConfig(bundle=str(tiny_models_dir / "tiny"), attacks=("nope",))
    with pytest.raises(ValueError, match="unknown variant"):
        EvaluationConfig(bundle=str(tiny_models_dir / "tiny"), variant="Q")


def test_lowering_an_adaptive_attack_needs_a_reason(tiny_models_dir):
    """Below 200 x 20 (PGD-EOT/BPDA) or 100 x 20 (APGD) the run must say why (issue 3, item 4)."""
    bundle = str(tiny_models_dir / "tiny")
    with pytest.raises(ValueError, match="lower pgd-eot below the standard.*reduced-reason"):
        EvaluationConfig(bundle=bundle, attacks=("counter-a", "pgd-eot"), adaptive_steps=20, adaptive_eot=4)
    with pytest.raises(ValueError, match="lower apgd-eot"):  # 100 steps is APGD's standard, EOT 1 is not
        EvaluationConfig(bundle=bundle, attacks=("apgd-eot",), adaptive_steps=100, adaptive_eot=1)
    reduced = EvaluationConfig(bundle=bundle, attacks=("pgd-eot",), adaptive_steps=20, reduced_reason="CPU")
    assert reduced.lowered_attacks() == ["pgd-eot"]
    standard = EvaluationConfig(bundle=bundle, attacks=("apgd-eot", "counter-b"), adaptive_steps=100)
    assert standard.lowered_attacks() == []
    assert EvaluationConfig(bundle=bundle, attacks=("fgsm",), adaptive_steps=1).lowered_attacks() == []


@pytest.mark.parametrize("entry, fix", [("Q:n=2", "unknown variant 'Q'"), ("A:steps=2", "setting from n, alpha"),
                                        ("A:n", "n must be an integer"), ("A:n=1.5", "n must be an integer"),
                                        ("F:gamma=x", "gamma must be a number"), ("B:beta=1", "beta must be in")])
def test_a_bad_compare_entry_says_what_to_fix(tiny_models_dir, entry, fix):
    with pytest.raises(ValueError, match=fix):
        EvaluationConfig(bundle=str(tiny_models_dir / "tiny"), compare=(entry,))


def test_compared_variants_see_the_same_adversaries_as_their_own_runs(tiny_models_dir, seven_images):
    """--compare adds defences without changing anyone's numbers: each variant, and each entry with its own
    settings ("A:n=1"), scores as in its own run."""
    def cells(overrides: dict | None = None, **fields) -> dict:
        config = EvaluationConfig(bundle=str(tiny_models_dir / "tiny"), attacks=("random", "fgsm"), samples=None,
                                  batch_size=4, epsilons=(0.1,), purify={"n": 3, "gamma": 0.05, **(overrides or {})},
                                  **fields)
        summary = run_evaluation(config, data=seven_images)
        return {(c["defence"], c["attack"]): c["correct"] for c in summary["cells"]}, summary["defences"]

    together, defences = cells(variant="F", compare=("E", "A:n=1", "A", "F:gamma=0.2:alpha=0.02"))
    # the tiny bundle has no adversarial classifier; an entry with its own settings follows its plain variant
    assert defences == ["none", "direct", "A", "A:n=1", "E", "F", "F:gamma=0.2:alpha=0.02"]
    for entry, variant, overrides in (("A", "A", {}), ("E", "E", {}), ("F", "F", {}), ("A:n=1", "A", {"n": 1}),
                                      ("F:gamma=0.2:alpha=0.02", "F", {"gamma": 0.2, "alpha": 0.02})):
        alone, _ = cells(overrides, variant=variant)
        assert {k[1]: v for k, v in together.items() if k[0] == entry} == {k[1]: v for k, v in alone.items()
                                                                           if k[0] == variant}


def test_worst_case_row_counts_images_that_survive_every_adaptive_attack(tiny_models_dir, seven_images):
    def cells(attacks: tuple[str, ...]) -> dict:
        config = EvaluationConfig(bundle=str(tiny_models_dir / "tiny"), attacks=attacks, samples=None,
                                  batch_size=3, epsilons=(0.3,), purify={"n": 2})
        return {(c["defence"], c["attack"]): c for c in run_evaluation(config, data=seven_images)["cells"]}

    together = cells(("random", "counter-a", "counter-b"))
    for defence in ("direct", "F"):
        worst = together[(defence, "worst-case")]
        adaptive = [c for (d, a), c in together.items() if d == defence and a.startswith("counter")]
        assert len(adaptive) == 6 and worst["threat_model"] == "adaptive" and worst["total"] == 7
        clean = together[(defence, "clean")]
        assert worst["correct"] <= min(c["correct"] for c in [clean, *adaptive])
        # every image the clean prediction or an attack got wrong is wrong in the worst case: at most the sum
        assert worst["correct"] >= 7 - sum(7 - c["correct"] for c in [clean, *adaptive])
    assert ("none", "worst-case") not in together  # grey-box-only defences are not in the adaptive row
    assert not any(a == "worst-case" for _, a in cells(("random", "counter-a")))  # one adaptive attack: no row


def test_worst_case_ands_the_clean_prediction_and_every_adaptive_attack_per_image(
        tiny_models_dir, seven_images, monkeypatch):
    """Per image, not per count: each outcome below is right on 6 of 7 images, a different one each."""
    outcomes = {"clean": [0, 1, 1, 1, 1, 1, 1], "counter-a": [1, 0, 1, 1, 1, 1, 1],
                "counter-b(beta=1)": [1, 1, 0, 1, 1, 1, 1], "pgd-eot": [1, 1, 1, 0, 1, 1, 1]}

    def scripted_score(self, epsilon, attack, threat_model, defences, x, y, attack_seconds):
        correct = torch.tensor(outcomes.get(attack, [1] * 7), dtype=torch.bool)
        return {d.name: correct.clone() for d in defences}

    monkeypatch.setattr(Evaluation, "_score", scripted_score)
    config = EvaluationConfig(bundle=str(tiny_models_dir / "tiny"), attacks=("counter-a", "counter-b", "pgd-eot"),
                              samples=None, batch_size=7, epsilons=(0.3,), purify={"n": 1},
                              adaptive_steps=1, adaptive_eot=1, reduced_reason="a test")
    cells = run_evaluation(config, data=seven_images)["cells"]  # only the harness's own row is tallied
    assert {(c["defence"], c["correct"], c["total"]) for c in cells} == {("direct", 3, 7), ("F", 3, 7)}


def test_tune_prints_each_point_its_compared_entries_direct_and_no_defence(tiny_models_dir, seven_images,
                                                                           monkeypatch, capsys):
    monkeypatch.setattr(tune, "holdout_images", lambda bundle, data_dir=None: seven_images)
    assert apudae_cli.main(["tune", "--bundle", str(tiny_models_dir / "tiny"), "--grid", '{"n": 2}', '{"variant": "E"}',
                            "--compare", "A:n=1", "--attacks", "fgsm", "--samples", "7"]) == 0
    rows = [line.split(" | ") for line in capsys.readouterr().out.splitlines() if line.startswith("|")]
    assert [row[0] for row in rows] == ["| settings", '| {"n": 2}', '| {"n": 2} compared: A:n=1',
                                        '| {"variant": "E"}', '| {"variant": "E"} compared: A:n=1',
                                        "| direct", "| none"]
    assert rows[-1][1] == "0.429"  # the undefended classifier is right on 3 of the 7 clean images
    assert rows[2][1:] == rows[4][1:]  # the compared entry does not depend on the point's variant
