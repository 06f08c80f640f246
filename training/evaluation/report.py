"""Write an evaluation's results: results.json, results.md (one table per epsilon and threat model)."""
from __future__ import annotations

import json
import re
from pathlib import Path

from apudae.training.evaluation.harness import Artifacts
from apudae.training.evaluation.stats import CLEAN


def markdown_tables(summary: dict) -> str:
    """Accuracy tables: rows = attacks, columns = defences, cells "acc [low, high]" with n below; then the
    same on the images the bare classifier gets right clean (the paper's ImageNet protocol), when those
    are not all of them; then, with a detector, one table with rejection per false-positive rate."""
    cells = summary["cells"]
    defences = summary["defences"]
    lines = [f"# Evaluation of bundle `{summary['bundle']}` ({summary['samples']} test images)", "",
             f"Purification: `{json.dumps(summary['purification'])}`", "", *_detector_line(summary.get("detector")), ""]
    for epsilon in summary["config"]["epsilons"]:
        for threat in ("grey-box", "adaptive"):
            rows = [c for c in cells if c["epsilon"] == epsilon and c["threat_model"] == threat]
            if not rows:
                continue
            lines += [f"## epsilon = {epsilon:g} — {threat}", ""] + _accuracy_table(rows, defences, lambda c: c)
            lines += _steps_table(rows)
            subsets = [c.get("correct_subset") for c in rows]
            if all(subsets) and any(sub["total"] < c["total"] for sub, c in zip(subsets, rows)):
                lines += ["On the images the bare classifier gets right clean (the paper's protocol):", ""]
                lines += _accuracy_table(rows, defences, lambda c: {**c, **c["correct_subset"]})
            for rate in dict.fromkeys(rate for c in rows for rate in c.get("with_rejection", {})):
                lines += _rejection_table(rows, defences, rate)
    lines += _worst_of_sweeps(cells)
    lines += ["Attack settings:", "", "```json", json.dumps(summary["attacks"], indent=1, default=str), "```", ""]
    return "\n".join(lines)


def _table(rows: list[dict], defences: list[str], entry, seconds: bool = False) -> list[str]:
    """One table of ``rows``' cells, rows = attacks, columns = ``defences``; ``entry(cell, attack)`` is a
    cell's text ("—" where the defence has no cell); ``seconds`` adds the attack's seconds per image."""
    lines = ["| attack | " + " | ".join(defences) + (" | attack s/img |" if seconds else " |"),
             "|---|" + "---|" * (len(defences) + seconds)]
    for attack in dict.fromkeys(c["attack"] for c in rows):
        by_defence = {c["defence"]: c for c in rows if c["attack"] == attack}
        entries = [entry(by_defence[d], attack) if d in by_defence else "—" for d in defences]
        last = f" {max(c['attack_seconds_per_image'] for c in by_defence.values()):.3f} |" if seconds else ""
        lines.append(f"| {attack} | " + " | ".join(entries) + " |" + last)
    return lines + [""]


def _accuracy_table(rows: list[dict], defences: list[str], counts) -> list[str]:
    """Accuracy [95% CI] n per cell; ``counts(cell)`` gives the dict with the accuracy, ci95 and total to show."""
    def entry(cell: dict, attack: str) -> str:
        c = counts(cell)
        return f"{c['accuracy']:.3f} [{c['ci95'][0]:.3f}, {c['ci95'][1]:.3f}] n={c['total']}"

    return _table(rows, defences, entry, seconds=True)


def _detector_line(detector: dict | None) -> list[str]:
    """What the run's detector was: its thresholds, or that the bundle has none."""
    if detector is None:
        return ["Detector: none (the bundle has no detector thresholds; add them with "
                "`apudae calibrate-detector --bundle <dir>`), so no tables with rejection."]
    thresholds = ", ".join(f"{rate}: {t:.4g}" for rate, t in detector["thresholds"].items())
    return [f"Detector: eq. 7's error before purification above a threshold set on {detector['n']} clean held-out "
            f"training images (false-positive rate: threshold) {thresholds}."]


def _rejection_table(rows: list[dict], defences: list[str], rate: str) -> list[str]:
    """Rows = attacks, columns = defences, at false-positive rate ``rate``: robust accuracy with rejection
    (flagged or correct) [95% CI], the share flagged and the ROC-AUC against the clean images; on the clean
    row the accuracy on the accepted images and the share rejected."""
    def entry(c: dict, attack: str) -> str:
        r = c.get("with_rejection", {}).get(rate)
        if r is None:
            return "—"
        if attack == CLEAN:
            accepted = "—" if r["accepted_accuracy"] is None else f"{r['accepted_accuracy']:.3f}"
            return f"{accepted} of {r['accepted']} accepted, rejected {r['detection_rate']:.3f}"
        flagged = f", flagged {r['detection_rate']:.3f}" if "detection_rate" in r else ""
        auc = f", AUC {c['roc_auc']:.3f}" if "roc_auc" in c else ""
        return f"{r['accuracy']:.3f} [{r['ci95'][0]:.3f}, {r['ci95'][1]:.3f}]{flagged}{auc}"

    return [f"With rejection at false-positive rate {rate} (an attacked image is defended when flagged or "
            "classified correctly; clean row: accuracy on the accepted images, and the share rejected):", "",
            *_table(rows, defences, entry)]


def _steps_table(rows: list[dict]) -> list[str]:
    """Mean purification steps per image (0 for an image left alone under mu), rows = attacks, columns =
    the purifying defences among ``rows``; no lines when none purifies."""
    purifying = list(dict.fromkeys(c["defence"] for c in rows if c.get("purification_steps_per_image") is not None))
    if not purifying:
        return []
    lines = ["Purification steps per image:", "", "| attack | " + " | ".join(purifying) + " |",
             "|---|" + "---|" * len(purifying)]
    for attack in dict.fromkeys(c["attack"] for c in rows):
        steps = {c["defence"]: c["purification_steps_per_image"] for c in rows if c["attack"] == attack}
        lines.append(f"| {attack} | " + " | ".join("—" if steps.get(d) is None else f"{steps[d]:.1f}"
                                                    for d in purifying) + " |")
    return lines + [""]


def _worst_of_sweeps(cells: list[dict]) -> list[str]:
    """One line per (epsilon, defence, swept attack): the setting (counter-attack B's beta of eq. 15, the
    detector-aware attacks' weight) with the lowest accuracy, and with rejection the lowest at each rate."""
    groups: dict[tuple[float, str, str], list[dict]] = {}
    for c in cells:
        if "(" in c["attack"]:
            groups.setdefault((c["epsilon"], c["defence"], re.sub(r"\(.*?\)", "", c["attack"])), []).append(c)
    lines = []
    for (epsilon, defence, attack), group in groups.items():
        worst = min(group, key=lambda c: c["accuracy"])
        line = f"{attack}, worst setting: eps={epsilon:g} {defence}: {worst['attack']} -> {worst['accuracy']:.3f}"
        for rate in group[0].get("with_rejection", {}):
            worst = min(group, key=lambda c: c["with_rejection"][rate]["accuracy"])
            line += f"; with rejection at {rate}: {worst['attack']} -> {worst['with_rejection'][rate]['accuracy']:.3f}"
        lines.append(line)
    return lines + ([""] if lines else [])


def write_outputs(summary: dict, artifacts: Artifacts, out: str | Path, classes: list[str]) -> dict:
    """Write results.json, results.md and the plots into ``out``; returns {kind: path}."""
    from apudae.training.evaluation.plots import accuracy_vs_epsilon, error_histograms, gallery

    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    files = {"json": out / "results.json", "markdown": out / "results.md"}
    files["markdown"].write_text(markdown_tables(summary))
    files["histograms"] = error_histograms(artifacts.errors, summary["purification"]["variant"], out)
    files["gallery"] = gallery(artifacts.gallery, classes, out)
    if len(summary["config"]["epsilons"]) > 1:
        files["accuracy_vs_epsilon"] = accuracy_vs_epsilon(summary["cells"], out)
    paths = {k: str(v) for k, v in files.items() if v is not None}
    files["json"].write_text(json.dumps({**summary, "files": paths}, indent=1, default=str))
    return paths
