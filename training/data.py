"""Data sets held in memory as uint8 tensors.

Every loader returns an ``ImageSet``: images (N, C, H, W) uint8, labels (N,) int64
and the class names in index order. The data directory comes from ``--data-dir``
or ``APUDAE_DATA_DIR``; nothing is downloaded unless ``download=True``.

Supported names:
- ``mnist``, ``fashion-mnist``: torchvision's IDX layout (``<dir>/MNIST/raw``, ``<dir>/FashionMNIST/raw``).
- ``cifar10``: torchvision's own files (``<dir>/cifar-10-batches-py``, whose MD5 sums
  torchvision checks before reading them), else an ImageFolder ``<dir>/cifar10-jpeg/{train,test}``
  or ``<dir>/cifar10/{train,test}``, else the archive ``<dir>/cifar10-jpeg.tar.gz``
  (unpacked once into the cache directory).
- ``imagenet``: the ILSVRC sample ``<dir>/imagenet-sample`` (ImageFolder, one image per class, folders in
  the standard class order), each image resized to 256 on its shorter side and centre-cropped to 224
  (``IMAGENET_PREPROCESSING``). It has no train/test split of its own: ``IMAGENET_SPLIT`` splits it once
  with a fixed seed (train: DAE training and calibration; test: every reported number).
- ``imagefolder:<path>``: any ImageFolder with ``train/`` and ``test/``: all images one size, or of any
  size when ``preprocessing`` is given (a bring-your-own bundle's, from ``apudae import-classifier``).
"""
from __future__ import annotations

import os
import tarfile
import tempfile
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
from PIL import Image

from apudae.models.preprocessing import Preprocessing

DATASETS = ("mnist", "fashion-mnist", "cifar10", "imagenet")
IMAGENET_PREPROCESSING = Preprocessing(resize=256, crop=224, interpolation="bicubic")
IMAGENET_SPLIT = {"seed": 0, "train": 500}  # the rest of the sample is the test split
DATA_HELP = (
    "Set --data-dir or APUDAE_DATA_DIR to a folder holding MNIST/raw, FashionMNIST/raw, "
    "cifar-10-batches-py, cifar10-jpeg/{train,test}, cifar10-jpeg.tar.gz or imagenet-sample "
    "(torchvision's download=True fetches them where there is internet)."
)


class DataNotFoundError(FileNotFoundError):
    """The data set is not where we looked; the message names the places and how to get it."""


@dataclass
class ImageSet:
    images: torch.Tensor  # (N, C, H, W) uint8
    labels: torch.Tensor  # (N,) int64
    classes: list[str]

    def __len__(self) -> int:
        return int(self.labels.shape[0])

    def subset(self, index: torch.Tensor) -> "ImageSet":
        return ImageSet(self.images[index], self.labels[index], self.classes)

    def floats(self) -> torch.Tensor:
        """Images as float32 in [0, 1], (N, C, H, W)."""
        return self.images.float().div_(255.0)


def resolve_data_dir(data_dir: str | os.PathLike | None) -> Path:
    """--data-dir wins, then APUDAE_DATA_DIR, then ./data."""
    return Path(data_dir or os.environ.get("APUDAE_DATA_DIR") or "data").expanduser()


def cache_dir() -> Path:
    return Path(os.environ.get("APUDAE_CACHE_DIR") or Path.home() / ".cache" / "apudae").expanduser()


def load_dataset(name: str, split: str, data_dir: str | os.PathLike | None = None, download: bool = False,
                 preprocessing: Preprocessing | None = None) -> ImageSet:
    """Load ``split`` ("train" or "test") of data set ``name`` (see module docstring); ``preprocessing``
    applies to ``imagefolder:`` data sets."""
    if split not in ("train", "test"):
        raise ValueError(f"split must be 'train' or 'test', not {split!r}")
    root = resolve_data_dir(data_dir)
    if name in ("mnist", "fashion-mnist"):
        return _load_idx(name, split, root, download)
    if name == "cifar10":
        return _load_cifar10(split, root, download)
    if name == "imagenet":
        return _load_imagenet_sample(split, root)
    if name.startswith("imagefolder:"):
        return _load_image_folder(_photo_folder(name, split, root), preprocessing)
    raise ValueError(f"unknown data set {name!r}; choose one of {', '.join(DATASETS)} or imagefolder:<path>")


def _load_idx(name: str, split: str, root: Path, download: bool) -> ImageSet:
    from torchvision import datasets

    cls = datasets.MNIST if name == "mnist" else datasets.FashionMNIST
    try:
        ds = cls(root=str(root), train=split == "train", download=download)
    except RuntimeError as err:
        raw = root / cls.__name__ / "raw"
        raise DataNotFoundError(f"{name} not found: looked in {raw}. {DATA_HELP}") from err
    return ImageSet(ds.data.unsqueeze(1).contiguous(), ds.targets.long(), list(ds.classes))


def _load_cifar10(split: str, root: Path, download: bool) -> ImageSet:
    from torchvision import datasets

    if (root / "cifar-10-batches-py").is_dir() or download:
        ds = datasets.CIFAR10(root=str(root), train=split == "train", download=download)
        images = torch.from_numpy(ds.data).permute(0, 3, 1, 2).contiguous()
        return ImageSet(images, torch.tensor(ds.targets, dtype=torch.long), list(ds.classes))
    for folder in (root / "cifar10-jpeg", root / "cifar10"):
        if (folder / split).is_dir():
            return _load_image_folder(folder / split)
    archive = root / "cifar10-jpeg.tar.gz"
    if archive.is_file():
        unpacked = cache_dir() / "cifar10-jpeg"
        if not (unpacked / split).is_dir():
            _unpack(archive, cache_dir())
        return _load_image_folder(unpacked / split)
    looked = [root / "cifar-10-batches-py", root / "cifar10-jpeg", root / "cifar10", archive]
    raise DataNotFoundError(f"cifar10 not found: looked in {', '.join(map(str, looked))}. {DATA_HELP}")


def _unpack(archive: Path, target: Path) -> None:
    """Unpack ``archive`` into ``target`` so that no reader ever sees a half-unpacked folder.

    It is unpacked into a private temporary folder first and each top-level entry is then moved into
    place with one rename. Two processes that start on a fresh machine at once (two evaluations side
    by side) used to read each other's partial extraction and evaluate on a third of CIFAR-10's test
    split without an error; now the slower one keeps the copy that was renamed first."""
    target.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(dir=target, prefix=".unpacking-") as private:
        with tarfile.open(archive) as tar:
            tar.extractall(private, filter="data")
        for entry in Path(private).iterdir():
            try:
                entry.rename(target / entry.name)
            except OSError:  # another process renamed its complete copy first
                pass


def _save_atomically(path: Path, array: np.ndarray) -> None:
    """np.save to a temporary file beside ``path``, then rename it over ``path`` (readers see all or nothing)."""
    with tempfile.NamedTemporaryFile(dir=path.parent, prefix=f".{path.name}-", suffix=".npy", delete=False) as f:
        np.save(f, array)
    os.replace(f.name, path)


def _load_image_folder(folder: Path, preprocessing: Preprocessing | None = None) -> ImageSet:
    """Decode an ImageFolder once (through ``preprocessing`` when given, so images of any size come out one
    size) and keep a uint8 .npy copy in the cache directory."""
    classes = sorted(p.name for p in folder.iterdir() if p.is_dir())
    if not classes:
        raise DataNotFoundError(f"{folder} holds no class folders: expected {folder}/<class>/<image files>")
    key = str(folder.resolve()).strip("/").replace("/", "_")
    if preprocessing is not None:
        key += "_" + "_".join(str(v) for v in preprocessing.to_dict().values())
    cached_images, cached_labels = cache_dir() / f"{key}.images.npy", cache_dir() / f"{key}.labels.npy"
    if cached_images.is_file() and cached_labels.is_file():
        images = np.load(cached_images, allow_pickle=False)
        labels = np.load(cached_labels, allow_pickle=False)
    else:
        files = _folder_files(folder, classes)
        mode = "L" if Image.open(files[0][0]).mode in ("L", "1") else "RGB"
        arrays = [_decoded(f, mode, preprocessing) for f, _ in files]
        shapes = {a.shape for a in arrays}
        if len(shapes) != 1:
            raise ValueError(f"images in {folder} differ in size ({sorted(shapes)[:3]}...); resize them to one size")
        images = np.stack(arrays)
        images = images[:, None] if images.ndim == 3 else images.transpose(0, 3, 1, 2)
        labels = np.array([i for _, i in files], dtype=np.int64)
        cache_dir().mkdir(parents=True, exist_ok=True)
        _save_atomically(cached_images, np.ascontiguousarray(images))
        _save_atomically(cached_labels, labels)  # last: a reader needs both files
    return ImageSet(torch.from_numpy(np.ascontiguousarray(images)), torch.from_numpy(labels), classes)


def _folder_files(folder: Path, classes: list[str]) -> list[tuple[Path, int]]:
    """(file, class index) of every image of an ImageFolder, in ImageFolder order (classes, then file names)."""
    return [(f, i) for i, c in enumerate(classes) for f in sorted((folder / c).iterdir()) if f.is_file()]


def photo_files(name: str, split: str, data_dir: str | os.PathLike | None = None) -> list[Path]:
    """The original files of ``split`` of a photo data set (``imagenet`` or ``imagefolder:<path>``), in the
    order of ``load_dataset``'s images: what a client uploads before any preprocessing."""
    if name != "imagenet" and not name.startswith("imagefolder:"):
        raise ValueError(f"{name!r} is not a photo data set (imagenet or imagefolder:<path>)")
    folder = _photo_folder(name, split, resolve_data_dir(data_dir))
    files = [f for f, _ in _folder_files(folder, sorted(p.name for p in folder.iterdir() if p.is_dir()))]
    if name == "imagenet":
        return [files[i] for i in imagenet_split_indices(len(files))[split].tolist()]
    return files


def _photo_folder(name: str, split: str, root: Path) -> Path:
    """The ImageFolder that holds ``split`` of photo data set ``name``: ``root/imagenet-sample`` (both splits,
    divided by ``imagenet_split_indices``) or ``<path>/<split>`` of ``imagefolder:<path>``."""
    if name == "imagenet":
        folder = root / "imagenet-sample"
        if not folder.is_dir():
            raise DataNotFoundError(f"imagenet not found: looked in {folder}. Set --data-dir or APUDAE_DATA_DIR to "
                                    "a folder holding imagenet-sample/<wnid>/<image files>")
        return folder
    folder = Path(name.split(":", 1)[1]).expanduser() / split
    if not folder.is_dir():
        raise DataNotFoundError(f"no ImageFolder at {folder}: expected {folder}/<class>/<image files>")
    return folder


def imagenet_split_indices(n: int) -> dict[str, torch.Tensor]:
    """The fixed split of the ImageNet sample's ``n`` images (ImageFolder order) into train and test indices."""
    perm = torch.randperm(n, generator=torch.Generator().manual_seed(IMAGENET_SPLIT["seed"]))
    return {"train": perm[:IMAGENET_SPLIT["train"]].sort().values, "test": perm[IMAGENET_SPLIT["train"]:].sort().values}


def _load_imagenet_sample(split: str, root: Path) -> ImageSet:
    folder = _photo_folder("imagenet", split, root)
    full = _load_image_folder(folder, IMAGENET_PREPROCESSING)
    names = _imagenet_class_names(folder, full.classes)
    return ImageSet(full.images, full.labels, names).subset(imagenet_split_indices(len(full))[split])


def _imagenet_class_names(folder: Path, wnids: list[str]) -> list[str]:
    """Readable class names from ``classes.tsv`` (index, WordNet id, name) where it exists, else the WordNet ids."""
    table = folder / "classes.tsv"
    if not table.is_file():
        return wnids
    rows = [line.split("\t") for line in table.read_text().splitlines() if line.strip()]
    by_wnid = {row[1]: row[2] for row in rows if len(row) >= 3}
    return [by_wnid.get(wnid, wnid) for wnid in wnids]


def _decoded(file: Path, mode: str, preprocessing: Preprocessing | None) -> np.ndarray:
    """(H, W) or (H, W, 3) uint8 pixels of ``file``, through ``preprocessing`` when given."""
    array = np.asarray(Image.open(file).convert(mode))
    if preprocessing is None:
        return array
    pixels = torch.from_numpy(array.copy()).float().div(255)
    pixels = pixels[None] if pixels.ndim == 2 else pixels.permute(2, 0, 1)
    out = (preprocessing(pixels) * 255).round().to(torch.uint8)
    return out[0].numpy() if out.shape[0] == 1 else out.permute(1, 2, 0).numpy()


def train_holdout_split(n: int, holdout: int, seed: int = 0) -> tuple[torch.Tensor, torch.Tensor]:
    """Split indices 0..n-1 of the *training* split into (train, holdout) with a fixed seed.

    The holdout part calibrates mu/sigma (eq. 7) and tunes purification; the test split never does.
    """
    if not 0 < holdout < n:
        raise ValueError(f"holdout must be between 1 and {n - 1}, got {holdout}")
    perm = torch.randperm(n, generator=torch.Generator().manual_seed(seed))
    return perm[holdout:], perm[:holdout]
