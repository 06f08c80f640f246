"""``apudae attack``: write a BIM-attacked copy of one image (eq. 3) against a bundle's classifier, to try the service.

The image goes through the bundle's preprocessing (or must be at its input size), BIM runs on the bare
classifier (grey-box: the attacker does not see the purifier) with ``alpha = 1/255`` and the paper's
n = floor(2 eps / alpha + 2) steps, and the result is saved as an 8-bit PNG at the input size, so the
service takes it as it is.
"""
from __future__ import annotations

import argparse
import json
from pathlib import Path

import torch

from apudae.models.bundle import load_bundle
from apudae.service.imaging import ImageError, decode_image, encode_png
from apudae.training.attacks.base import quantize_8bit
from apudae.training.attacks.pgd import pgd_linf

ALPHA = 1 / 255


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--bundle", required=True, help="bundle directory, e.g. models/imagenet")
    parser.add_argument("--image", type=Path, required=True, help="the clean image (any size for a photo bundle)")
    parser.add_argument("--label", required=True, help="its true class: an index or a class name of the bundle")
    parser.add_argument("--epsilon", type=float, default=5 / 255, help="l_inf budget in [0, 1] (default: 5/255)")
    parser.add_argument("--out", type=Path, required=True, help="the attacked PNG to write")


def _label_index(label: str, classes: list[str]) -> int:
    if label.isdigit() and int(label) < len(classes):
        return int(label)
    if label in classes:
        return classes.index(label)
    raise ValueError(f"--label {label!r} is neither a class index below {len(classes)} nor one of the bundle's class names")


def run(args: argparse.Namespace) -> int:
    bundle = load_bundle(args.bundle)
    try:
        label = _label_index(args.label, bundle.classes)
        decoded = decode_image(args.image.read_bytes(), args.image.name, bundle.input_shape, False, 50_000_000,
                               bundle.preprocessing)
    except (ValueError, ImageError, OSError) as err:
        print(f"apudae attack: {err}")
        return 2
    x, y = decoded.pixels[None], torch.tensor([label])
    steps = int(2 * args.epsilon / ALPHA + 2)
    adversarial = pgd_linf(bundle.classifier, x, y, args.epsilon, ALPHA, steps, random_start=False)
    adversarial = quantize_8bit(adversarial)
    with torch.no_grad():
        before, after = bundle.classifier(x).argmax(1).item(), bundle.classifier(adversarial).argmax(1).item()
    args.out.write_bytes(encode_png(adversarial[0], (adversarial.shape[3], adversarial.shape[2])))
    print(json.dumps({"out": str(args.out), "epsilon": args.epsilon, "steps": steps,
                      "clean_prediction": bundle.classes[before], "attacked_prediction": bundle.classes[after]}))
    return 0
