"""The model card (``README.md``) written into every bundle, from its bundle.json contents."""
from __future__ import annotations

import json


def _noise_by_epoch(provenance: dict) -> list[str]:
    """Model-card lines on the training noise: the DAE's sigma_max (eq. 5) when its epochs did not all use the
    same, and the plain classifier's noise augmentation (s_max, 0 = none) when any epoch used some."""
    history = provenance.get("history", {})
    sigmas = [record.get("sigma_max") for record in history.get("dae", [])]
    noise = [record.get("noise_max", 0.0) for record in history.get("classifier", [])]
    lines = []
    if len(set(sigmas)) > 1:
        lines.append(f"- DAE training noise sigma_max by epoch: {', '.join(str(s) for s in sigmas)}")
    if any(noise):
        lines.append("- Classifier training noise X + s*N(0,1), s ~ U[0, s_max], s_max by epoch: "
                     + ", ".join(str(s) for s in noise))
    return lines


def _detector_lines(detector: dict | None) -> list[str]:
    """The detector's thresholds per false-positive rate (models/detector.py), or that it has none."""
    if detector is None:
        return ["- Detector: none calibrated (no image is flagged)."]
    thresholds = ", ".join(f"{float(fpr):g} -> {t:.6g}" for fpr, t in detector["thresholds"].items())
    return [f"- Detector: flags an image whose {detector['statistic']} exceeds the threshold set on {detector['n']} "
            f"clean held-out *training* images at each false-positive rate: {thresholds}."]


def _classifier_line(meta: dict) -> str:
    classifier = meta["classifier"]
    if classifier.get("format") == "onnx":
        source = classifier["source"]
        origin = source.get("torch") or source.get("onnx")
        return f"- Classifier imported from `{origin}` as `classifier.onnx` (normalisation inside)."
    return f"- Classifier `{classifier['arch']}` (normalisation inside), also as `classifier.onnx`."


def model_card(meta: dict) -> str:
    p, m, c = meta["provenance"], meta["metrics"], meta["calibration"]
    lines = [
        f"# Model card: {meta['name']}", "",
        f"APuDAE defence for {p['data']} images of shape {meta['input_shape']} (C, H, W), values in [0, 1].", "",
        "## Contents",
        f"- DAE (paper Table 1, eq. 5-6): N={meta['dae']['depth']}, width {meta['dae']['width']}, "
        f"trained on X + sigma*N(0,1), sigma ~ U[0, {meta['dae']['sigma_max']}].",
        _classifier_line(meta),
        *([f"- Preprocessing of uploads: {json.dumps(meta['preprocessing'])} (shorter side, centre crop)."]
          if meta.get("preprocessing") else []),
        f"- Calibration (eq. 7) on {c['n']} held-out *training* images: mu = {c['mu']:.6g}, sigma = {c['sigma']:.6g}.",
        *_detector_lines(c.get("detector")),
        f"- Purification defaults: {json.dumps(meta['purification'])}.",
        *[f"- Purification for attack budget ε = {eps} (request `budget={eps}`): the defaults with "
          f"{json.dumps(overrides)}." for eps, overrides in meta.get("purification_budgets", {}).items()], "",
        "## Test metrics (full test split)",
        *[f"- {k}: {v:.4f}" if isinstance(v, float) else f"- {k}: {v}" for k, v in m.items()], "",
        "## Provenance",
        f"- data: {p['data']}; splits: {json.dumps(p['splits'])}; seed {p['seed']}; git {p['git_commit'][:12]}",
        f"- epochs: {json.dumps(p['epochs'])}; wall time (s): {json.dumps(p['wall_seconds'])}",
        *_noise_by_epoch(p),
        f"- machine: {p['machine']['cpu']} ({p['machine']['cores']} cores), torch {p['machine']['torch']}", "",
        "## Limits",
        "Grey-box robustness does not imply robustness to adaptive attacks; see docs/RESULTS.md.", "",
    ]
    return "\n".join(lines)
