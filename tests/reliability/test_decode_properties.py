"""Issue 5 item 1: property-based tests (hypothesis) of the decoding path — whatever the bytes,
``decode_image`` gives a (C, H, W) image in [0, 1] or an ImageError (422), nothing else; and the
image routes answer any body with a status below 500.

Derandomized so CI is repeatable; ``APUDAE_SOAK=1`` runs ten times the examples."""
from __future__ import annotations

import io
import os
import struct
import zlib

import numpy as np
import torch
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from PIL import Image

from reliability_fixtures import client, files_field, make_settings  # noqa: F401 (pytest fixtures)
from apudae.service.imaging import ImageError, decode_image

EXAMPLES = 200 * (10 if os.environ.get("APUDAE_SOAK") == "1" else 1)
FUZZ = settings(max_examples=EXAMPLES, deadline=None, derandomize=True,
                suppress_health_check=[HealthCheck.too_slow, HealthCheck.function_scoped_fixture])
MAX_PIXELS = 256 * 256
MODES = ("L", "RGB", "RGBA", "P", "LA", "1", "I;16", "I", "CMYK", "F")
FORMATS = ("PNG", "JPEG", "GIF", "BMP", "TIFF", "WEBP")


def decode_or_refuse(data: bytes, channels: int, resize: bool) -> torch.Tensor | None:
    """The decoded pixels, checked; None when refused with ImageError. Any other exception fails."""
    try:
        pixels = decode_image(data, "x", (channels, 28, 28), resize, MAX_PIXELS).pixels
    except ImageError as err:
        assert str(err).startswith("x: ")  # names the upload and says what is wrong
        return None
    assert pixels.shape == (channels, 28, 28) and pixels.dtype == torch.float32
    assert torch.isfinite(pixels).all() and pixels.min() >= 0 and pixels.max() <= 1
    return pixels


@st.composite
def encoded_images(draw) -> tuple[bytes, str, tuple[int, int]]:
    """A real image of random mode, size and content, encoded in a random format it can be saved in."""
    mode, format = draw(st.sampled_from(MODES)), draw(st.sampled_from(FORMATS))
    width, height = draw(st.integers(1, 64)), draw(st.integers(1, 64))
    seed = draw(st.integers(0, 2**32 - 1))
    rgb = np.random.default_rng(seed).integers(0, 256, (height, width, 3), dtype=np.uint8)
    image = Image.fromarray(rgb, mode="RGB").convert(mode)
    buffer = io.BytesIO()
    try:
        image.save(buffer, format=format)
    except (OSError, ValueError, KeyError):  # this format cannot hold this mode
        image = image.convert("RGB")
        buffer = io.BytesIO()
        image.save(buffer, format=format)
    return buffer.getvalue(), mode, (width, height)


@FUZZ
@given(st.binary(max_size=4096), st.sampled_from((1, 3)), st.booleans())
def test_arbitrary_bytes_decode_or_are_refused(data, channels, resize):
    decode_or_refuse(data, channels, resize)


@FUZZ
@given(encoded_images(), st.sampled_from((1, 3)), st.booleans())
def test_real_images_of_any_mode_size_and_format_decode_as_documented(encoded, channels, resize):
    data, mode, size = encoded
    pixels = decode_or_refuse(data, channels, resize)
    if (resize or size == (28, 28)) and mode != "F":
        assert pixels is not None  # every documented mode converts
    if size != (28, 28) and not resize:
        assert pixels is None


@FUZZ
@given(encoded_images(), st.data())
def test_damaged_images_decode_or_are_refused(encoded, data):
    raw = bytearray(encoded[0])
    for _ in range(data.draw(st.integers(1, 8))):
        at = data.draw(st.integers(0, len(raw) - 1))
        action = data.draw(st.sampled_from(("flip", "cut", "insert")))
        if action == "flip":
            raw[at] ^= data.draw(st.integers(1, 255))
        elif action == "cut":
            del raw[at:at + data.draw(st.integers(1, 64))]
        else:
            raw[at:at] = data.draw(st.binary(min_size=1, max_size=64))
        if not raw:
            break
    decode_or_refuse(bytes(raw), 1, data.draw(st.booleans()))


@FUZZ
@given(st.integers(1, 2**31 - 1), st.integers(1, 2**31 - 1))
def test_headers_claiming_too_many_pixels_are_refused_before_decoding(width, height):
    def chunk(kind: bytes, body: bytes) -> bytes:
        return struct.pack(">I", len(body)) + kind + body + struct.pack(">I", zlib.crc32(kind + body))
    header = chunk(b"IHDR", struct.pack(">IIBBBBB", width, height, 8, 0, 0, 0, 0))
    png = b"\x89PNG\r\n\x1a\n" + header + chunk(b"IDAT", zlib.compress(b"\0" * 64)) + chunk(b"IEND", b"")
    pixels = decode_or_refuse(png, 1, True)
    if width * height > MAX_PIXELS:
        assert pixels is None


@settings(FUZZ, max_examples=EXAMPLES // 2)
@given(body=st.binary(max_size=2048), content_type=st.sampled_from(
    ("image/png", "image/jpeg", "application/octet-stream", "text/plain", "")),
    route=st.sampled_from(("/score", "/purify", "/classify")))
def test_image_routes_answer_any_upload_below_500(client, body, content_type, route):
    answer = client.post(route, files=files_field(("f", body), content_type=content_type or "image/png"))
    assert answer.status_code in (200, 422), answer.text
    assert "detail" in answer.json() or "results" in answer.json()


@settings(FUZZ, max_examples=EXAMPLES // 2)
@given(body=st.binary(max_size=2048), content_type=st.sampled_from(
    ("multipart/form-data; boundary=x", "multipart/form-data", "application/json", "image/png", "text/plain")))
def test_image_routes_answer_any_raw_body_below_500(client, body, content_type):
    answer = client.post("/score", content=body, headers={"content-type": content_type})
    assert 400 <= answer.status_code < 500, answer.text
    assert "detail" in answer.json()
