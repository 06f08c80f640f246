"""Data loaders on small files the tests write (IDX, ImageFolder) and the missing-data error."""
import gzip
import struct
import tarfile

import numpy as np
import pytest
import torch
from PIL import Image

from apudae.models.preprocessing import Preprocessing
from apudae.training import data as data_module
from apudae.training.data import DataNotFoundError, load_dataset, train_holdout_split


def _write_idx(folder, prefix, images, labels):
    folder.mkdir(parents=True, exist_ok=True)
    with open(folder / f"{prefix}-images-idx3-ubyte", "wb") as f:
        f.write(struct.pack(">IIII", 2051, len(images), 28, 28) + images.tobytes())
    with open(folder / f"{prefix}-labels-idx1-ubyte", "wb") as f:
        f.write(struct.pack(">II", 2049, len(labels)) + labels.tobytes())


@pytest.mark.parametrize("name, folder", [("mnist", "MNIST"), ("fashion-mnist", "FashionMNIST")])
def test_idx_layout_loads_as_uint8_nchw(tmp_path, name, folder):
    rng = np.random.default_rng(0)
    images = rng.integers(0, 256, (5, 28, 28), dtype=np.uint8)
    labels = np.array([0, 1, 2, 3, 9], dtype=np.uint8)
    for prefix in ("train", "t10k"):
        _write_idx(tmp_path / folder / "raw", prefix, images, labels)
    data = load_dataset(name, "test", tmp_path)
    assert data.images.shape == (5, 1, 28, 28) and data.images.dtype == torch.uint8
    assert torch.equal(data.images[:, 0], torch.from_numpy(images))
    assert data.labels.tolist() == [0, 1, 2, 3, 9] and len(data.classes) == 10


def test_cifar10_image_folder_and_custom_image_folder(tmp_path, monkeypatch):
    monkeypatch.setenv("APUDAE_CACHE_DIR", str(tmp_path / "cache"))
    for split in ("train", "test"):
        for i, cls in enumerate(("airplane", "automobile")):
            (tmp_path / "cifar10-jpeg" / split / cls).mkdir(parents=True)
            Image.new("RGB", (32, 32), (i * 200, 10, 20)).save(tmp_path / "cifar10-jpeg" / split / cls / "0.png")
    data = load_dataset("cifar10", "train", tmp_path)
    assert data.images.shape == (2, 3, 32, 32) and data.classes == ["airplane", "automobile"]
    assert data.labels.tolist() == [0, 1] and data.images[1, 0, 0, 0] == 200
    again = load_dataset(f"imagefolder:{tmp_path / 'cifar10-jpeg'}", "train")  # served from the cache
    assert torch.equal(again.images, data.images)


def _write_cifar10_archive(root, classes=("airplane", "automobile")):
    """<root>/cifar10-jpeg.tar.gz holding cifar10-jpeg/{train,test}/<class>/0.png, one image per class."""
    staging = root / "staging"
    for split in ("train", "test"):
        for i, cls in enumerate(classes):
            (staging / "cifar10-jpeg" / split / cls).mkdir(parents=True)
            Image.new("RGB", (32, 32), (i * 200, 10, 20)).save(staging / "cifar10-jpeg" / split / cls / "0.png")
    with tarfile.open(root / "cifar10-jpeg.tar.gz", "w:gz") as tar:
        tar.add(staging / "cifar10-jpeg", arcname="cifar10-jpeg")


def test_archive_is_never_visible_half_unpacked(tmp_path, monkeypatch):
    """A second process must not find cifar10-jpeg/ in the cache while the first is still unpacking it."""
    cache = tmp_path / "cache"
    monkeypatch.setenv("APUDAE_CACHE_DIR", str(cache))
    _write_cifar10_archive(tmp_path)
    seen_during_extraction = []
    real_extractall = tarfile.TarFile.extractall

    def watched_extractall(tar, *args, **kwargs):
        real_extractall(tar, *args, **kwargs)
        seen_during_extraction.append((cache / "cifar10-jpeg").exists())

    monkeypatch.setattr(tarfile.TarFile, "extractall", watched_extractall)
    data = load_dataset("cifar10", "test", tmp_path)
    assert seen_during_extraction == [False]
    assert data.labels.tolist() == [0, 1] and data.classes == ["airplane", "automobile"]
    assert not [p for p in cache.iterdir() if p.name.startswith(".")]  # no temporary files left behind


def test_unpacking_beside_a_finished_copy_keeps_it(tmp_path, monkeypatch):
    """The slower of two processes unpacking at once finds the other's complete copy and keeps it."""
    cache = tmp_path / "cache"
    monkeypatch.setenv("APUDAE_CACHE_DIR", str(cache))
    _write_cifar10_archive(tmp_path)
    first = load_dataset("cifar10", "train", tmp_path)
    data_module._unpack(tmp_path / "cifar10-jpeg.tar.gz", cache)  # the race's loser, arriving late
    assert not [p for p in cache.iterdir() if p.name.startswith(".")]
    assert torch.equal(load_dataset("cifar10", "train", tmp_path).images, first.images)


def test_missing_data_names_where_it_looked_and_how_to_fix(tmp_path, monkeypatch):
    monkeypatch.delenv("APUDAE_DATA_DIR", raising=False)
    with pytest.raises(DataNotFoundError, match=r"looked in .*MNIST/raw.*APUDAE_DATA_DIR"):
        load_dataset("mnist", "train", tmp_path)
    with pytest.raises(DataNotFoundError, match=r"cifar-10-batches-py.*cifar10-jpeg.tar.gz"):
        load_dataset("cifar10", "test", tmp_path)
    with pytest.raises(ValueError, match="unknown data set"):
        load_dataset("svhn", "test", tmp_path)


def test_data_dir_comes_from_the_environment(tmp_path, monkeypatch):
    monkeypatch.setenv("APUDAE_DATA_DIR", str(tmp_path / "elsewhere"))
    with pytest.raises(DataNotFoundError, match="elsewhere"):
        load_dataset("mnist", "test")


def test_holdout_split_is_disjoint_fixed_and_complete():
    train, holdout = train_holdout_split(100, 10)
    assert len(holdout) == 10 and len(train) == 90
    assert sorted(torch.cat([train, holdout]).tolist()) == list(range(100))
    assert torch.equal(holdout, train_holdout_split(100, 10)[1])


def test_photo_files_are_the_originals_in_the_loaded_order(tmp_path, monkeypatch):
    monkeypatch.setenv("APUDAE_CACHE_DIR", str(tmp_path / "cache"))
    sizes = {"cat": [(40, 30), (30, 50)], "dog": [(64, 36)]}
    for cls, shapes in sizes.items():
        (tmp_path / "photos" / "test" / cls).mkdir(parents=True)
        for i, (w, h) in enumerate(shapes):
            Image.new("RGB", (w, h), (len(cls) * 20, i * 90, 30)).save(tmp_path / "photos" / "test" / cls / f"{i}.jpg")
    name = f"imagefolder:{tmp_path / 'photos'}"
    files = data_module.photo_files(name, "test")
    loaded = load_dataset(name, "test", preprocessing=Preprocessing(resize=24, crop=16))
    assert [f.parent.name for f in files] == [loaded.classes[i] for i in loaded.labels.tolist()] == ["cat", "cat", "dog"]
    assert [Image.open(f).size for f in files] == [(40, 30), (30, 50), (64, 36)]  # the files as uploaded, not resized
    with pytest.raises(ValueError, match="not a photo data set"):
        data_module.photo_files("mnist", "test", tmp_path)
    with pytest.raises(DataNotFoundError, match="imagenet not found: looked in .*imagenet-sample"):
        data_module.photo_files("imagenet", "test", tmp_path)
