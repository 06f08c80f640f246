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
from apudae.training.evaluation import evaluate, harness, tune
from apudae.training.evaluation.config import EvaluationConfig
from apudae.training.evaluation.harness import Evaluation, Outcome, run_evaluation
from apudae.training.evaluation.stats import Tally, wilson_interval
from tests.conftest import make_tiny_nets, write_tiny_bundle


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
    assert seen == [(0, 7), (3, 7), (6, 7), (7, 7)]  # images, after batches of 3, 3 and 1
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
    _with_data(monkeypatch, seven_images)
    assert evaluate.run(args) == 0
    assert (tmp_path / "accuracy_vs_epsilon.png").is_file()
    out = capsys.readouterr()
    assert "adaptive" in out.out
    assert "7 test images x 2 epsilon(s)" in out.out and "defences: none, direct, A, D, E" in out.out
    assert '"variant": "E"' in out.out and '"n": 2' in out.out
    assert "work: 308 attack steps" in out.out  # counter-a: 7 images x 22 BIM steps x 2 epsilons
    assert "estimate: about" in out.out + out.err


def _with_data(monkeypatch, data) -> None:
    """Make the CLI's runs use ``data`` instead of the bundle's test split."""
    monkeypatch.setattr(evaluate, "run_evaluation", lambda cfg, progress, resume, announce: run_evaluation(
        cfg, progress, data=data, resume=resume, announce=announce))


class Stop(Exception):
    """Stands for a run killed part way."""


def _outcome(summary: dict) -> list[tuple]:
    """What a run measured, without its timings (the rejection counts and ROC-AUC included)."""
    return [(c["defence"], c["attack"], c["correct"], c["total"], c["purification_steps_per_image"],
             c.get("with_rejection"), c.get("roc_auc")) for c in summary["cells"]]


def test_a_resumed_run_ends_with_the_numbers_of_an_uninterrupted_one(tiny_models_dir, seven_images, tmp_path):
    config = EvaluationConfig(bundle=str(tiny_models_dir / "tiny"), variant="F", purify={"gamma": 0.1},
                              attacks=("random", "pgd-eot"), samples=None, batch_size=3, epsilons=(0.1, 0.2),
                              adaptive_steps=2, adaptive_eot=2, reduced_reason="a test", out=str(tmp_path / "a"))
    whole = Evaluation(config, seven_images)
    whole_summary = whole.run()

    # attack steps: per batch, its images x 2 steps x 2 purifying defences (direct, F) that PGD-EOT targets
    def stop_in_the_second_batch(done: int, total: int) -> None:
        assert total == 2 * 7 * 2 * 2
        if done == 24:  # after the second batch's last attack, before its checkpoint
            raise Stop

    stopped = replace(config, out=str(tmp_path / "b"))
    with pytest.raises(Stop):
        run_evaluation(stopped, stop_in_the_second_batch, data=seven_images)
    assert (tmp_path / "b" / "checkpoint.safetensors").is_file()
    seen = []
    resumed = Evaluation(stopped, seven_images)
    summary = resumed.run(lambda done, total: seen.append(done), resume=True)
    assert seen == [12, 18, 24, 26, 28, 34, 40, 46, 52, 54, 56]  # from the checkpoint of the first batch on
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
        if done == 3:  # images: after the first batch
            raise Stop

    with pytest.raises(Stop):
        run_evaluation(config, stop, data=seven_images)
    with pytest.raises(ValueError, match="other settings \\(seed\\)"):
        run_evaluation(replace(config, seed=1), data=seven_images, resume=True)
    assert _outcome(run_evaluation(config, data=seven_images))  # without --resume: starts over


def _cli(*argv: str) -> argparse.Namespace:
    parser = argparse.ArgumentParser()
    evaluate.add_arguments(parser)
    return parser.parse_args(list(argv))


def _one_error_line(capsys, words: str) -> str:
    err = capsys.readouterr().err
    assert len(err.strip().splitlines()) == 1 and "Traceback" not in err, err
    assert err.startswith("apudae evaluate: error: ") and words in err, err
    return err


def test_the_cli_says_what_to_fix_instead_of_a_traceback(tiny_models_dir, seven_images, tmp_path, capsys):
    common = ["--bundle", str(tiny_models_dir / "tiny"), "--samples", "0", "--batch-size", "3", "--out", str(tmp_path)]
    assert evaluate.run(_cli(*common, "--attacks", "nope")) == 2
    _one_error_line(capsys, "unknown attacks")

    def stop(done: int, total: int) -> None:
        if done == 3:
            raise Stop

    with pytest.raises(Stop):
        run_evaluation(evaluate.config_from_args(_cli(*common, "--attacks", "random")), stop, data=seven_images)
    assert evaluate.run(_cli(*common, "--attacks", "random", "--seed", "1", "--resume")) == 2
    _one_error_line(capsys, "other settings (seed)")


def test_a_missing_data_directory_is_one_line_and_exit_code_2(tiny_models_dir, tmp_path, capsys):
    assert evaluate.run(_cli("--bundle", str(tiny_models_dir / "tiny"), "--data-dir", str(tmp_path / "nope"),
                             "--out", str(tmp_path / "out"))) == 2
    _one_error_line(capsys, f"data directory {tmp_path / 'nope'} does not exist")
    assert not (tmp_path / "out").exists()


def test_a_data_set_missing_from_the_data_directory_is_one_line(tmp_path, capsys):
    from conftest import REPO

    (tmp_path / "data").mkdir()
    assert evaluate.run(_cli("--bundle", str(REPO / "models" / "mnist"), "--data-dir", str(tmp_path / "data"),
                             "--device", "cpu", "--out", str(tmp_path / "out"))) == 2
    _one_error_line(capsys, "mnist not found: looked in")


def test_a_missing_bundle_is_one_line(tmp_path, capsys):
    assert evaluate.run(_cli("--bundle", str(tmp_path / "no-bundle"), "--out", str(tmp_path / "out"))) == 2
    _one_error_line(capsys, "not a bundle")


def test_an_earlier_runs_results_are_never_overwritten(tiny_models_dir, seven_images, tmp_path, monkeypatch,
                                                        capsys):
    _with_data(monkeypatch, seven_images)
    args = ["--bundle", str(tiny_models_dir / "tiny"), "--attacks", "random", "--samples", "0", "--batch-size", "3",
            "--out", str(tmp_path)]
    assert evaluate.run(_cli(*args)) == 0
    first = (tmp_path / "results.json").read_text()
    capsys.readouterr()
    for again in (args, [*args, "--seed", "1"], [*args, "--resume"]):
        assert evaluate.run(_cli(*again)) == 2
        _one_error_line(capsys, f"{tmp_path} already holds the results of an earlier run")
    assert (tmp_path / "results.json").read_text() == first


def test_an_unfinished_run_is_continued_only_with_resume(tiny_models_dir, seven_images, tmp_path, monkeypatch,
                                                         capsys):
    _with_data(monkeypatch, seven_images)
    args = ["--bundle", str(tiny_models_dir / "tiny"), "--attacks", "random", "--samples", "0", "--batch-size", "3",
            "--out", str(tmp_path)]

    def stop(done: int, total: int) -> None:
        if done == 3:
            raise Stop

    with pytest.raises(Stop):
        run_evaluation(evaluate.config_from_args(_cli(*args)), stop, data=seven_images)
    assert evaluate.run(_cli(*args)) == 2
    _one_error_line(capsys, "holds an unfinished run (checkpoint.safetensors); continue it with --resume")
    assert evaluate.run(_cli(*args, "--resume")) == 0
    assert (tmp_path / "results.json").is_file() and not (tmp_path / "checkpoint.safetensors").exists()


def test_the_progress_counts_images_with_an_estimate_after_the_first_batch(tiny_models_dir, seven_images,
                                                                          tmp_path, monkeypatch, capsys):
    _with_data(monkeypatch, seven_images)
    assert evaluate.run(_cli("--bundle", str(tiny_models_dir / "tiny"), "--attacks", "random,fgsm", "--samples", "0",
                             "--batch-size", "3", "--out", str(tmp_path))) == 0
    out = capsys.readouterr()
    settings_at = out.out.index("evaluate bundle tiny (tiny): 7 test images x 1 epsilon(s) [0.1], batches of 3")
    assert "work: 7 images" in out.out and "attacks: random, fgsm" in out.out
    assert settings_at < out.out.index("estimate: about")
    assert "the first 3 images took" in out.out and "7/7" in out.err and "image/s" in out.err


def test_help_shows_every_default(capsys):
    parser = argparse.ArgumentParser()
    evaluate.add_arguments(parser)
    text = " ".join(parser.format_help().split())
    for default in ("(default: 1000)", "(default: 250)", "(default: results/evaluate)", "(default: 0)",
                    "(default: [0.1])", "(default: random,fgsm,r-fgsm,bim,pgd,cw)"):
        assert default in text, default
    options = [a for a in parser._actions if a.option_strings and not a.required and a.dest != "help"]
    for action in options:
        help_text = " ".join(parser._get_formatter()._expand_help(action).split())
        assert "(default: " in help_text and "(default: None)" not in help_text, action.dest


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
                                  batch_size=3, epsilons=(0.3,), purify={"n": 2}, resubmissions=1)
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
    """Per image, not per count: each outcome below is right on 6 of 7 images, a different one each. With
    rejection (rate 0.01), an image counts where every outcome is right or flagged: the wrong clean image 0
    and the wrong counter-a image 1 are flagged, the wrong images 2 and 3 are not: 5 of 7."""
    outcomes = {"clean": [0, 1, 1, 1, 1, 1, 1], "counter-a": [1, 0, 1, 1, 1, 1, 1],
                "counter-b(beta=1)": [1, 1, 0, 1, 1, 1, 1], "pgd-eot": [1, 1, 1, 0, 1, 1, 1]}
    flags = {"clean": [1, 0, 0, 0, 0, 0, 0], "counter-a": [0, 1, 0, 0, 0, 0, 0], "pgd-eot": [0, 0, 0, 0, 1, 0, 0]}

    def scripted_score(self, epsilon, attack, threat_model, defences, x, y, attack_seconds):
        correct = torch.tensor(outcomes.get(attack, [1] * 7), dtype=torch.bool)
        flagged = torch.tensor(flags.get(attack, [0] * 7), dtype=torch.bool)
        return {d.name: Outcome(correct.clone(), {0.01: flagged}) for d in defences}

    monkeypatch.setattr(Evaluation, "_score", scripted_score)
    config = EvaluationConfig(bundle=str(tiny_models_dir / "tiny"), attacks=("counter-a", "counter-b", "pgd-eot"),
                              samples=None, batch_size=7, epsilons=(0.3,), purify={"n": 1}, resubmissions=1,
                              adaptive_steps=1, adaptive_eot=1, reduced_reason="a test")
    cells = run_evaluation(config, data=seven_images)["cells"]  # only the harness's own row is tallied
    assert {(c["defence"], c["correct"], c["total"]) for c in cells} == {("direct", 3, 7), ("F", 3, 7)}
    assert all(c["with_rejection"]["0.01"]["defended"] == 5 and "detection_rate" not in c["with_rejection"]["0.01"]
               for c in cells)


def test_tune_prints_each_point_its_compared_entries_direct_and_no_defence(tiny_models_dir, seven_images,
                                                                           monkeypatch, capsys):
    monkeypatch.setattr(tune, "holdout_images", lambda bundle, data_dir=None: seven_images)
    assert apudae_cli.main(["tune", "--bundle", str(tiny_models_dir / "tiny"), "--grid", '{"n": 2}', '{"variant": "E"}',
                            "--compare", "A:n=1", "--attacks", "fgsm", "--samples", "7"]) == 0
    rows = [line.split(" | ") for line in capsys.readouterr().out.splitlines() if line.startswith("|")]
    assert [row[0] for row in rows] == ["| settings", '| {"n": 2}', '| {"n": 2} compared: A:n=1',
                                        '| {"variant": "E"}', '| {"variant": "E"} compared: A:n=1',
                                        "| direct", "| none"]
    assert rows[-1][1].startswith("0.429 / ")  # the undefended classifier is right on 3 of the 7 clean images
    assert rows[2][1:] == rows[4][1:]  # the compared entry does not depend on the point's variant


def test_tune_gives_each_swept_adaptive_row_and_the_worst_case_with_rejection(tiny_models_dir, seven_images,
                                                                              monkeypatch, capsys):
    """One column per weight of counter-b-detector and the worst case; each entry: accuracy / accuracy with
    rejection at --fpr ("0.010" is the stored rate 0.01), as the run's cells hold them; "—" where a defence has
    no such row."""
    monkeypatch.setattr(tune, "holdout_images", lambda bundle, data_dir=None: seven_images)
    summaries = []

    def recorded(config, data):
        summaries.append(run_evaluation(config, data=data))
        return summaries[-1]

    monkeypatch.setattr(tune, "run_evaluation", recorded)
    assert apudae_cli.main(["tune", "--bundle", str(tiny_models_dir / "tiny"), "--grid", '{"n": 1}',
                            "--attacks", "counter-a,counter-b-detector", "--samples", "7", "--fpr", "0.010"]) == 0
    header, point, direct, none = [[entry.strip() for entry in line.strip("|").split("|")]
                                   for line in capsys.readouterr().out.splitlines() if line.startswith("|")]
    assert header == ["settings", "clean", "counter-a", "counter-b-detector(weight=1)",
                      "counter-b-detector(weight=10)", "counter-b-detector(weight=100)", "worst-case"]
    cells = {c["attack"]: c for c in summaries[0]["cells"] if c["defence"] == "F"}
    for attack, entry in zip(header[1:], point[1:]):
        cell = cells[attack]
        assert entry == f"{cell['accuracy']:.3f} / {cell['with_rejection']['0.01']['accuracy']:.3f}"
    assert none[1].startswith("0.429 / ") and none[2:] == ["—"] * 5  # the adaptive attacks target a purifier
    assert direct[2] != "—"


def test_tune_refuses_a_false_positive_rate_the_detector_does_not_store(tiny_models_dir, monkeypatch):
    monkeypatch.setattr(tune, "holdout_images", lambda bundle, data_dir=None: pytest.fail("ran before the check"))
    with pytest.raises(ValueError, match="stores the rates 0.001, 0.01, 0.05"):
        apudae_cli.main(["tune", "--bundle", str(tiny_models_dir / "tiny"), "--grid", "{}", "--fpr", "0.02"])


def test_accuracy_shows_progress_and_counts_every_image(tiny_models_dir, seven_images, monkeypatch, capsys):
    from tqdm import tqdm

    from apudae.training import accuracy as accuracy_command
    from apudae.training.loops import accuracy

    monkeypatch.setattr(accuracy_command, "load_dataset", lambda name, split, data_dir=None, preprocessing=None: seven_images)
    monkeypatch.setattr(accuracy_command, "PROGRESS_CHUNK", 3)  # chunks of 3, 3 and 1
    monkeypatch.setattr(accuracy_command, "tqdm", lambda **kw: tqdm(**{**kw, "mininterval": 0, "leave": True}))
    assert accuracy_command.run(argparse.Namespace(models_dir=str(tiny_models_dir), data_dir=None)) == 0
    out = capsys.readouterr()
    (line,) = out.out.splitlines()
    expected = accuracy(load_bundle(tiny_models_dir / "tiny").classifier, seven_images)
    assert json.loads(line)["clean_test_accuracy"] == round(expected, 4) == round(3 / 7, 4)
    assert "accuracy tiny" in out.err and "3/7" in out.err and "7/7" in out.err and "image/s" in out.err


def test_attack_alpha_sets_the_bim_step_and_its_eq3_steps(tiny_models_dir, seven_images):
    """--attack-alpha 1/255 gives the paper's Table 4 BIM: floor(2 eps / alpha + 2) = 12 steps at 5/255."""
    config = EvaluationConfig(bundle=str(tiny_models_dir / "tiny"), attacks=("bim", "counter-b"),
                              epsilons=(5 / 255,), attack_alpha=1 / 255, samples=None)
    built = Evaluation(config, data=seven_images).attacks()[5 / 255]
    assert {a.alpha for a in built} == {1 / 255} and {a.steps for a in built} == {12}
    assert EvaluationConfig(bundle=config.bundle, attacks=("bim",)).attack_alpha is None  # eps / 10 then


@pytest.mark.parametrize("alpha, attacks, fix", [(0.0, ("bim",), "must be > 0"),
                                                 (0.01, ("fgsm", "cw"), "none of them is among the attacks")])
def test_an_attack_alpha_that_would_do_nothing_is_refused(tiny_models_dir, alpha, attacks, fix):
    with pytest.raises(ValueError, match=fix):
        EvaluationConfig(bundle=str(tiny_models_dir / "tiny"), attacks=attacks, attack_alpha=alpha)


def test_cells_also_count_the_images_the_bare_classifier_gets_right(tiny_models_dir, seven_images):
    """The paper's protocol: only images 0, 4 and 6 are right under no defence, so every cell's subset has
    3 images, across a partial batch, and "none" is right on all of them clean."""
    config = EvaluationConfig(bundle=str(tiny_models_dir / "tiny"), attacks=("fgsm",), samples=None,
                              batch_size=4, epsilons=(0.1,))
    summary = run_evaluation(config, data=seven_images)
    assert all(c["correct_subset"]["total"] == 3 for c in summary["cells"])
    clean = {c["defence"]: c for c in summary["cells"] if c["attack"] == "clean"}
    assert clean["none"]["correct_subset"]["accuracy"] == 1.0
    for cell in summary["cells"]:
        assert cell["correct_subset"]["correct"] <= min(cell["correct"], 3)


def test_the_markdown_adds_the_correct_subset_tables_when_the_classifier_misses_some(
        tiny_models_dir, seven_images, tmp_path):
    config = EvaluationConfig(bundle=str(tiny_models_dir / "tiny"), attacks=("fgsm",), samples=None,
                              epsilons=(0.1,), out=str(tmp_path))
    run_evaluation(config, data=seven_images)
    text = (tmp_path / "results.md").read_text()
    assert "the paper's protocol" in text and "n=3" in text


def test_bim_counts_the_steps_of_the_fractions_that_rounded_decimals_stand_for():
    from apudae.training.attacks import build_attacks

    assert [build_attacks("bim", eps, alpha=0.0039216)[0].steps for eps in (0.0196078, 0.0980392)] == [12, 52]
    assert build_attacks("bim", 0.1)[0].steps == 22  # alpha = eps / 10


def test_the_combined_defence_purifies_then_asks_the_adversarial_classifier(tmp_path, seven_images, monkeypatch):
    """--combined: column "F+adversarial-training" after F. With the plain classifier's own weights as the
    adversarial one it scores as F, cell for cell; every adversary aimed at it is made against that classifier."""
    _, same_weights = make_tiny_nets()
    write_tiny_bundle(tmp_path / "tiny", adversarial_classifier=same_weights)
    targeted = []

    class RecordingTarget(harness.AttackTarget):
        def __init__(self, classifier, *rest, **named):
            targeted.append(classifier)
            super().__init__(classifier, *rest, **named)

    monkeypatch.setattr(harness, "AttackTarget", RecordingTarget)
    config = EvaluationConfig(bundle=str(tmp_path / "tiny"), attacks=("fgsm", "counter-a", "pgd-eot"), samples=None,
                              batch_size=4, epsilons=(0.1,), purify={"n": 2}, resubmissions=2, combined=True,
                              adaptive_steps=1, adaptive_eot=1, reduced_reason="a test")
    evaluation = Evaluation(config, seven_images)
    seen = []
    summary = evaluation.run(lambda done, total: seen.append((done, total)))
    assert seen[-1][0] == seen[-1][1]  # the planned work counts each classifier's counter-attack
    assert summary["defences"] == ["none", "adversarial-training", "direct", "F", "F+adversarial-training"]
    cells = {(c["defence"], c["attack"]): c["correct"] for c in summary["cells"]}
    assert {a: v for (d, a), v in cells.items() if d == "F"} == \
           {a: v for (d, a), v in cells.items() if d == "F+adversarial-training"}
    robust = evaluation.bundle.adversarial_classifier
    # per batch: fgsm per classifier (2), counter-a per classifier of the purifiers (2), pgd-eot per purifier (3)
    assert sum(c is robust for c in targeted) == 2 * 3 and len(targeted) == 2 * 7


def test_combined_needs_an_adversarial_classifier(tiny_models_dir, seven_images):
    config = EvaluationConfig(bundle=str(tiny_models_dir / "tiny"), attacks=("fgsm",), samples=None, combined=True)
    with pytest.raises(ValueError, match="no adversarially trained classifier.*--combined"):
        Evaluation(config, seven_images)
