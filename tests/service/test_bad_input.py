"""Issue 4 item 12: every kind of bad input gets its documented 4xx and a JSON message — never a 500."""
from __future__ import annotations

import struct
import zlib

import numpy as np
import pytest
from PIL import Image

from service_fixtures import client, digit_png, make_settings, png_bytes  # noqa: F401 (pytest fixtures)


def post(client, *payloads: bytes, route: str = "/purify", **kwargs):
    files = [("files", (f"{i}.png", p, "image/png")) for i, p in enumerate(payloads)]
    return client.post(route, files=files, **kwargs)


def assert_error(answer, status: int, words: str) -> None:
    assert answer.status_code == status, answer.text
    assert answer.headers["content-type"].startswith("application/json")
    assert words in answer.json()["detail"]


def noise_image(mode: str = "L", size: tuple[int, int] = (28, 28)) -> Image.Image:
    rng = np.random.default_rng(0)
    return Image.fromarray(rng.integers(0, 256, (size[1], size[0], 3), dtype=np.uint8), mode="RGB").convert(mode)


def png_with_header(width: int, height: int) -> bytes:
    """A PNG whose header claims width x height with (almost) no pixel data: a decompression bomb's front."""
    def chunk(kind: bytes, data: bytes) -> bytes:
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))
    header = struct.pack(">IIBBBBB", width, height, 8, 0, 0, 0, 0)
    return b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", header) + chunk(b"IDAT", zlib.compress(b"\0" * 64)) + chunk(b"IEND", b"")


def test_not_an_image(client):
    assert_error(post(client, b"this is not an image"), 422, "not an image")


def test_zero_bytes(client):
    assert_error(post(client, b""), 422, "empty")


def test_truncated_png(client):
    data = png_bytes(noise_image())
    assert_error(post(client, data[: len(data) // 2]), 422, "truncated or corrupt")


def test_truncated_jpeg(client):
    data = png_bytes(noise_image("RGB"), "JPEG")
    assert_error(post(client, data[: len(data) // 2]), 422, "truncated or corrupt")


def test_too_many_pixels(client):
    big = png_bytes(Image.new("L", (1000, 1000)))  # a few kB of zeros, 10^6 pixels
    assert_error(post(client, big), 422, "pixels")


def test_header_claiming_huge_dimensions(client):
    assert_error(post(client, png_with_header(100_000, 100_000)), 422, "pixels")


def test_body_over_the_limit(client):
    answer = client.post("/purify", content=b"\0" * (2 * 2**20 + 1), headers={"content-type": "application/json"})
    assert_error(answer, 413, "exceeds")


def test_body_over_the_limit_without_content_length(client):
    def chunks():
        for _ in range(3):
            yield b"\0" * 2**20
    answer = client.post("/purify", content=chunks(), headers={"content-type": "application/json"})
    assert_error(answer, 413, "exceeds")


def test_too_many_images_multipart(client):
    assert_error(post(client, *[digit_png(i) for i in range(9)]), 422, "too many images")


def test_too_many_images_json(client):
    import base64
    images = [base64.b64encode(digit_png(i)).decode() for i in range(9)]
    assert_error(client.post("/score", json={"images": images}), 422, "too many images")


def test_unknown_model(client):
    assert_error(post(client, digit_png(), params={"model": "../tiny"}), 404, "unknown model")


def test_unknown_variant(client):
    assert_error(post(client, digit_png(), params={"variant": "Z"}), 422, "variant")


def test_steps_out_of_range(client):
    assert_error(post(client, digit_png(), params={"n": 100_000}), 422, "n")


def test_wrong_image_size(client):
    assert_error(post(client, digit_png(size=(32, 32))), 422, "resize=true")


@pytest.mark.parametrize("mode", ["L", "RGB", "RGBA", "P", "LA", "1", "I;16"])
def test_documented_modes_are_converted(client, mode):
    image = noise_image("L").convert("I;16") if mode == "I;16" else noise_image(mode)
    answer = post(client, png_bytes(image), route="/score")
    assert answer.status_code == 200, answer.text


def test_cmyk_jpeg_is_converted(client):
    answer = post(client, png_bytes(noise_image("CMYK"), "JPEG"), route="/score")
    assert answer.status_code == 200, answer.text


def test_float_images_are_refused(client):
    image = Image.fromarray(np.zeros((28, 28), dtype=np.float32), mode="F")
    assert_error(post(client, png_bytes(image, "TIFF")), 422, "float")


def test_unsupported_content_type(client):
    assert_error(client.post("/purify", content=digit_png(), headers={"content-type": "image/png"}), 415,
                 "multipart/form-data")


def test_invalid_json(client):
    assert_error(client.post("/purify", content=b"{not json", headers={"content-type": "application/json"}), 400,
                 "not valid JSON")


def test_json_without_images(client):
    assert_error(client.post("/purify", json={"pictures": []}), 422, "invalid JSON body")


def test_invalid_base64(client):
    assert_error(client.post("/purify", json={"images": ["***"]}), 422, "base64")


def test_multipart_without_files(client):
    assert_error(client.post("/purify", data={"other": "x"}, files={"unused": ("a", b"b")}), 422, "no images")


def test_files_field_holding_text(client):
    assert_error(client.post("/purify", data={"files": "x"}, files={"unused": ("a", b"b")}), 422, "not text")


def test_malformed_multipart(client):
    answer = client.post("/purify", content=b"--nope\r\n garbage",
                         headers={"content-type": "multipart/form-data; boundary=xyz"})
    assert answer.status_code in (400, 422) and "detail" in answer.json()


def test_unknown_route_is_json(client):
    assert client.get("/nope").json() == {"detail": "Not Found"}
