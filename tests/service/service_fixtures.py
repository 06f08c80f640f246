"""Fixtures and image files of the service tests: settings and an app on the tiny bundle, its client,
the admin header, PNGs made on the spot.

Test modules import the fixtures they use by name (``from service_fixtures import client``): this
directory has no conftest.py, so that ``from conftest import ...`` elsewhere keeps meaning tests/conftest.py."""
from __future__ import annotations

import io
from collections.abc import Iterator

import numpy as np
import pytest
from fastapi.testclient import TestClient
from PIL import Image

from apudae.service.main import create_app
from apudae.service.settings import Settings

ADMIN_TOKEN = "test-admin-token-0123456789"


def png_bytes(image: Image.Image, format: str = "PNG", **options) -> bytes:
    """``image`` encoded in ``format``."""
    buffer = io.BytesIO()
    image.save(buffer, format=format, **options)
    return buffer.getvalue()


def digit_png(seed: int = 0, size: tuple[int, int] = (28, 28), mode: str = "L") -> bytes:
    """A random-noise image of ``size`` (w, h) in ``mode``, as PNG."""
    rng = np.random.default_rng(seed)
    grey = Image.fromarray(rng.integers(0, 256, (size[1], size[0]), dtype=np.uint8), mode="L")
    return png_bytes(grey.convert(mode))


@pytest.fixture
def make_settings(tiny_models_dir, tmp_path):
    """Settings on the tiny bundle with small limits; keyword arguments override."""
    def make(**overrides) -> Settings:
        defaults = dict(model_dir=tiny_models_dir, device="cpu", max_batch_size=8, max_batch_wait=0.01,
                        max_queue_size=64, max_images=8, max_pixels=256 * 256, max_body_bytes=2 * 2**20,
                        request_deadline=30.0, admin_token=ADMIN_TOKEN, eval_dir=tmp_path / "evaluations")
        return Settings(**{**defaults, **overrides})
    return make


@pytest.fixture
def client(make_settings) -> Iterator[TestClient]:
    """A started app on the tiny bundle (lifespan run), with the admin token configured."""
    with TestClient(create_app(make_settings()), raise_server_exceptions=False) as test_client:
        yield test_client


@pytest.fixture
def admin() -> dict[str, str]:
    return {"Authorization": f"Bearer {ADMIN_TOKEN}"}
