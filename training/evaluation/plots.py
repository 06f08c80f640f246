"""Plots of an evaluation (matplotlib, Agg): error histograms (paper Fig. 3), a gallery (Fig. 2), and
accuracy against epsilon."""
from __future__ import annotations

from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402

GALLERY_ROWS = ("input", "adversarial", "direct", "purified")


def error_histograms(errors: dict, variant: str, out: Path) -> Path | None:
    """Fig. 3: eq. 7 reconstruction error of clean and adversarial images, before and after purification
    with ``variant``; one panel per attack, log-spaced bins. errors[attack] = {"before": [...], "after": [...]}."""
    attacks = [a for a in errors if a != "clean"]
    if "clean" not in errors or not attacks:
        return None
    values = [v for e in errors.values() for v in e["before"] + e["after"] if v > 0]
    bins = np.geomspace(min(values), max(values), 40)
    fig, axes = plt.subplots(len(attacks), 2, figsize=(10, 2.6 * len(attacks)), squeeze=False)
    for row, attack in enumerate(attacks):
        for col, when in enumerate(("before", "after")):
            ax = axes[row][col]
            ax.hist(errors["clean"][when], bins=bins, alpha=0.6, label="clean")
            ax.hist(errors[attack][when], bins=bins, alpha=0.6, label=attack)
            ax.set_xscale("log")
            ax.set_title(f"{attack}: {when} purification ({variant})", fontsize=9)
            ax.legend(fontsize=8)
    axes[-1][0].set_xlabel("reconstruction error (eq. 7, mean over pixels)")
    fig.tight_layout()
    path = out / "error_histograms.png"
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return path


def gallery(shown: dict, classes: list[str], out: Path) -> Path | None:
    """Fig. 2: per image, input / adversarial / direct DAE output / purified, each titled with the
    classifier's prediction. Uses the first attack other than "clean" and "random" when there is one."""
    attacks = [a for a in shown if a not in ("clean", "random")] or [a for a in shown if a != "clean"]
    if "clean" not in shown or not attacks:
        return None
    adv = shown[attacks[0]]
    rows = {"input": (shown["clean"]["images"]["input"], shown["clean"]["preds"]["input"]),
            "adversarial": (adv["images"]["input"], adv["preds"]["input"]),
            "direct": (adv["images"]["direct"], adv["preds"]["direct"]),
            "purified": (adv["images"]["purified"], adv["preds"]["purified"])}
    k = rows["input"][0].shape[0]
    fig, axes = plt.subplots(k, 4, figsize=(7, 1.8 * k), squeeze=False)
    for i in range(k):
        for j, name in enumerate(GALLERY_ROWS):
            images, preds = rows[name]
            image = images[i].permute(1, 2, 0).numpy()
            ax = axes[i][j]
            ax.imshow(image.squeeze(-1) if image.shape[-1] == 1 else image, cmap="gray", vmin=0, vmax=1)
            ax.set_title(f"{name}: {classes[int(preds[i])]}", fontsize=7)
            ax.axis("off")
    fig.suptitle(f"{attacks[0]} vs {adv['defence']}", fontsize=9)
    fig.tight_layout()
    path = out / "gallery.png"
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return path


def accuracy_vs_epsilon(cells: list[dict], out: Path) -> Path:
    """Accuracy against epsilon, one line per (defence, attack)."""
    fig, ax = plt.subplots(figsize=(7, 4.5))
    series: dict[tuple[str, str], list[tuple[float, float]]] = {}
    for c in cells:
        if c["attack"] != "clean":
            series.setdefault((c["defence"], c["attack"]), []).append((c["epsilon"], c["accuracy"]))
    for (defence, attack), points in series.items():
        points.sort()
        ax.plot([p[0] for p in points], [p[1] for p in points], marker="o", label=f"{defence} / {attack}")
    ax.set_xlabel("epsilon (l_inf)")
    ax.set_ylabel("accuracy")
    ax.set_ylim(0, 1)
    ax.legend(fontsize=6, ncol=2)
    fig.tight_layout()
    path = out / "accuracy_vs_epsilon.png"
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return path
