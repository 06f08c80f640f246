"""Write the bad-file corpus of the reliability tests: ``python tests/reliability/make_corpus.py``.

Each file is what a hostile or careless client may upload to a 1x28x28 model served with
``max_pixels = 256 * 256`` (the test settings). ``corpus/expected.json`` holds the documented
answer of each (docs/SERVICE.md "Errors" and "Image conversions"): ``status`` 200 or 422, the
words the 422 message must hold, and, for the files that must decode, the mean pixel value
the conversion rules give (checked by test_bad_files.py).

``corpus/v2/`` holds request bodies for the Open Inference Protocol's ``POST /v2/models/{name}/infer`` on the
same model with ``max_images = 8``: ``v2/expected.json`` gives each body's Inference-Header-Content-Length
(``header_length``, null: none sent), the answer's ``status`` and the words its ``error`` must hold.
``python tests/reliability/make_corpus.py v2`` rewrites only those.

The files are committed: the corpus stays fixed even where a later Pillow encodes differently.
"""
from __future__ import annotations

import io
import json
import struct
import sys
import zlib
from pathlib import Path

import numpy as np
from PIL import Image

OUT = Path(__file__).resolve().parent / "corpus"
SIZE = 28


def encode(image: Image.Image, format: str, **options) -> bytes:
    buffer = io.BytesIO()
    image.save(buffer, format=format, **options)
    return buffer.getvalue()


def png_chunk(kind: bytes, data: bytes) -> bytes:
    return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))


def raw_png(width: int, height: int, bit_depth: int, colour_type: int, rows: bytes) -> bytes:
    """A PNG written by hand (Pillow cannot write 16-bit RGB, nor lie in its header)."""
    header = struct.pack(">IIBBBBB", width, height, bit_depth, colour_type, 0, 0, 0)
    return (b"\x89PNG\r\n\x1a\n" + png_chunk(b"IHDR", header) + png_chunk(b"IDAT", zlib.compress(rows, 9))
            + png_chunk(b"IEND", b""))


def noise(mode: str = "L", size: tuple[int, int] = (SIZE, SIZE)) -> Image.Image:
    rng = np.random.default_rng(0)
    rgb = rng.integers(0, 256, (size[1], size[0], 3), dtype=np.uint8)
    return Image.fromarray(rgb, mode="RGB").convert(mode)


def half_white(size: int = SIZE) -> Image.Image:
    """Left half white, right half black."""
    array = np.zeros((size, size), dtype=np.uint8)
    array[:, : size // 2] = 255
    return Image.fromarray(array, mode="L")


def exif_rotated_jpeg() -> bytes:
    """``half_white`` stored as is, with EXIF orientation 6 (display rotated 90 degrees clockwise):
    displayed, the top half is white."""
    exif = Image.Exif()
    exif[0x0112] = 6
    return encode(half_white().convert("RGB"), "JPEG", quality=95, exif=exif.tobytes())


def palette_with_transparency() -> bytes:
    """Index 0 white but fully transparent (flattened onto black), index 1 opaque white; half each."""
    image = Image.fromarray((np.arange(SIZE * SIZE).reshape(SIZE, SIZE) % 2).astype(np.uint8), mode="P")
    image.putpalette([255, 255, 255, 255, 255, 255] + [0, 0, 0] * 254)
    return encode(image, "PNG", transparency=0)


def animated_gif() -> bytes:
    """Three frames, white then black then black: the first frame (white) is used."""
    frames = [Image.new("L", (SIZE, SIZE), value) for value in (255, 0, 0)]
    return encode(frames[0], "GIF", save_all=True, append_images=frames[1:], duration=50, loop=0)


def grey16() -> bytes:
    """16-bit grey at 32768 everywhere: 32768 / 65535."""
    return raw_png(SIZE, SIZE, 16, 0, b"".join(b"\0" + b"\x80\x00" * SIZE for _ in range(SIZE)))


def rgb16() -> bytes:
    """16-bit RGB, white: Pillow reads it as 8-bit RGB."""
    rows = b"".join(b"\0" + b"\xff" * (SIZE * 6) for _ in range(SIZE))
    return raw_png(SIZE, SIZE, 16, 2, rows)


def jpeg_claiming(width: int, height: int) -> bytes:
    """A JPEG whose SOF0 header is rewritten to claim ``width`` x ``height``."""
    data = bytearray(encode(noise("RGB"), "JPEG"))
    sof = data.index(b"\xff\xc0")
    data[sof + 5:sof + 9] = struct.pack(">HH", height, width)
    return bytes(data)


def flipped_idat() -> bytes:
    """A PNG whose compressed pixel data is damaged in the middle (CRC no longer matches)."""
    data = bytearray(encode(noise(), "PNG"))
    middle = data.index(b"IDAT") + 40
    data[middle:middle + 16] = bytes(16)
    return bytes(data)


def damaged_bmp_header() -> bytes:
    """A BMP whose info-header size (byte 14) names no known header type."""
    data = bytearray(encode(Image.new("L", (SIZE, SIZE), 255), "BMP"))
    data[14] = 41
    return bytes(data)


def cases() -> dict[str, tuple[bytes, dict]]:
    """File name -> (bytes, expected answer)."""
    png = encode(noise(), "PNG")
    jpeg = encode(noise("RGB"), "JPEG")
    corrupt = {"status": 422, "words": "truncated or corrupt"}
    not_image = {"status": 422, "words": "not an image"}
    too_big = {"status": 422, "words": "pixels"}
    wrong_size = {"status": 422, "words": "resize=true"}
    return {
        "zero_bytes.png": (b"", {"status": 422, "words": "empty"}),
        "truncated.png": (png[: len(png) // 2], corrupt),
        "truncated_header.png": (png[:30], not_image),  # too short to be recognised at all
        "truncated.jpg": (jpeg[: len(jpeg) // 2], corrupt),
        "truncated.gif": (animated_gif()[:40], not_image),
        "damaged_idat.png": (flipped_idat(), corrupt),
        "damaged_header.bmp": (damaged_bmp_header(), corrupt),
        "truncated.bmp": (encode(Image.new("L", (SIZE, SIZE), 255), "BMP")[:100], corrupt),
        "truncated.webp": (encode(noise("RGB"), "WEBP")[:60], corrupt),
        "truncated.tiff": (encode(noise(), "TIFF")[:200], corrupt),
        "huge_header.png": (raw_png(100_000, 100_000, 8, 0, b"\0" * 64), too_big),
        "huge_header.jpg": (jpeg_claiming(65_000, 65_000), too_big),
        "bomb_5000x5000.png": (encode(Image.new("L", (5000, 5000)), "PNG", optimize=True), too_big),
        "zero_width.png": (raw_png(0, SIZE, 8, 0, b""), not_image),  # Pillow does not recognise a 0-wide PNG
        "text.png": (b"this is plain text, not an image\n" * 4, not_image),
        "html.jpg": (b"<!doctype html><html><body>hello</body></html>", not_image),
        "svg.png": (b'<svg xmlns="http://www.w3.org/2000/svg" width="28" height="28"/>', not_image),
        "pdf.png": (b"%PDF-1.4\n1 0 obj << >> endobj\ntrailer << >>\n%%EOF\n", not_image),
        "float32.tiff": (encode(Image.fromarray(np.zeros((SIZE, SIZE), np.float32), mode="F"), "TIFF"),
                         {"status": 422, "words": "float"}),
        "wrong_size_32x32.png": (encode(noise(size=(32, 32)), "PNG"), wrong_size),
        "wrong_size_1x1.png": (encode(noise(size=(1, 1)), "PNG"), wrong_size),
        "wrong_size_1x4096.png": (encode(noise(size=(1, 4096)), "PNG"), wrong_size),
        "grey16.png": (grey16(), {"status": 200, "mean": 32768 / 65535}),
        "rgb16.png": (rgb16(), {"status": 200, "mean": 1.0}),
        "cmyk.jpg": (encode(Image.new("CMYK", (SIZE, SIZE), (0, 0, 0, 0)), "JPEG", quality=95),
                     {"status": 200, "mean": 1.0}),
        "palette_transparency.png": (palette_with_transparency(), {"status": 200, "mean": 0.5}),
        "rgba_transparent.png": (encode(Image.new("RGBA", (SIZE, SIZE), (255, 255, 255, 0)), "PNG"),
                                 {"status": 200, "mean": 0.0}),
        "animated.gif": (animated_gif(), {"status": 200, "mean": 1.0}),
        "exif_rotated.jpg": (exif_rotated_jpeg(), {"status": 200, "mean": 0.5, "top_half_mean": 1.0}),
        "one_bit.png": (encode(Image.new("1", (SIZE, SIZE), 1), "PNG"), {"status": 200, "mean": 1.0}),
        "bmp.bmp": (encode(Image.new("L", (SIZE, SIZE), 255), "BMP"), {"status": 200, "mean": 1.0}),
        "webp.webp": (encode(Image.new("RGB", (SIZE, SIZE), (255, 255, 255)), "WEBP", lossless=True),
                      {"status": 200, "mean": 1.0}),
        "multipage.tiff": (encode(Image.new("L", (SIZE, SIZE), 255), "TIFF", save_all=True,
                                  append_images=[Image.new("L", (SIZE, SIZE), 0)]), {"status": 200, "mean": 1.0}),
    }


def v2_request(shape: list[int], datatype: str = "UINT8", size: int | None = None, data: list | None = None,
               **fields) -> bytes:
    """The JSON of an inference request with one input ``images``: binary (``size`` bytes follow) or ``data``."""
    tensor = {"name": "images", "shape": shape, "datatype": datatype}
    tensor.update({"parameters": {"binary_data_size": size}} if size is not None else {"data": data})
    return json.dumps({"inputs": [tensor], **fields}).encode()


def binary(header: bytes, data: bytes, length: int | None = None) -> tuple[bytes, int]:
    return header + data, len(header) if length is None else length


def bad(words: str) -> dict:
    """The answer to a bad v2 request: 400 whose error holds ``words``."""
    return {"status": 400, "words": words}


def v2_cases() -> dict[str, tuple[bytes, int | None, dict]]:
    """File name -> (body, Inference-Header-Content-Length or None, expected answer)."""
    pixels = np.random.default_rng(0).integers(0, 256, SIZE * SIZE, dtype=np.uint8).tobytes()
    good = v2_request([1, 1, SIZE, SIZE], size=len(pixels))
    return {
        "binary_ok.bin": (*binary(good, pixels), {"status": 200}),
        "binary_nhwc_ok.bin": (*binary(v2_request([1, SIZE, SIZE, 1], size=len(pixels)), pixels), {"status": 200}),
        "short_binary.bin": (*binary(good, pixels[:700]), bad("only 700 bytes")),
        "extra_binary.bin": (*binary(good, pixels + bytes(16)), bad("16 bytes of binary data")),
        "length_too_long.bin": (*binary(good, pixels, len(good) + 9), bad("not valid JSON")),
        "length_too_short.bin": (*binary(good, pixels, len(good) - 5), bad("not valid JSON")),
        "length_past_end.bin": (*binary(good, pixels, 10**6), bad("body has only")),
        "size_mismatch.bin": (*binary(v2_request([1, 1, SIZE, SIZE], size=700), pixels[:700]), bad("needs 784")),
        "too_many_images.bin": (*binary(v2_request([9, 1, SIZE, SIZE], size=9 * len(pixels)), pixels * 9),
                                bad("at most 8")),
        "huge_shape.bin": (*binary(v2_request([10**12, 1, SIZE, SIZE], size=len(pixels)), pixels), bad("at most 8")),
        "fp16_datatype.bin": (*binary(v2_request([1, 1, SIZE, SIZE], "FP16", size=2 * len(pixels)), pixels * 2),
                              bad("datatype 'FP16'")),
        "no_length_header.bin": (good + pixels, None, bad("not valid JSON")),
        "wrong_shape.json": (v2_request([1, SIZE, SIZE], data=[0] * SIZE * SIZE), None, bad("[B, 1, 28, 28]")),
        "negative_batch.json": (v2_request([-1, 1, SIZE, SIZE], data=[]), None, bad("B >= 1")),
        "count_mismatch.json": (v2_request([1, 1, SIZE, SIZE], data=[0] * 10), None, bad("holds 10 values")),
        "ragged_data.json": (v2_request([1, 1, SIZE, SIZE], data=[[1, 2], [3]]), None, bad("numbers only")),
        "uint8_overflow.json": (v2_request([1, 1, SIZE, SIZE], data=[256] * SIZE * SIZE), None, bad("0 to 255")),
        "fp32_nan.json": (v2_request([1, 1, SIZE, SIZE], "FP32", data=[float("nan")] * SIZE * SIZE), None,
                          bad("[0, 1]")),
        "fp32_ok.json": (v2_request([1, 1, SIZE, SIZE], "FP32", data=[0.5] * SIZE * SIZE), None, {"status": 200}),
        "unknown_parameter.json": (v2_request([1, 1, SIZE, SIZE], data=[0] * SIZE * SIZE, parameters={"eps": 1}),
                                   None, bad("unknown parameter 'eps'")),
        "inputs_not_a_list.json": (b'{"inputs": {"name": "images"}}', None, bad("invalid inference request.inputs")),
        "not_json.bin": (b"\x00\x01\x02 binary garbage", None, bad("not valid JSON")),
        "empty.bin": (b"", None, bad("not valid JSON")),
    }


def write_v2() -> None:
    folder = OUT / "v2"
    folder.mkdir(parents=True, exist_ok=True)
    expected = {}
    for name, (body, length, answer) in v2_cases().items():
        (folder / name).write_bytes(body)
        expected[name] = {"header_length": length, **answer}
    (folder / "expected.json").write_text(json.dumps(expected, indent=1, sort_keys=True) + "\n")
    print(f"wrote {len(expected)} files to {folder}")


def main() -> None:
    if sys.argv[1:] != ["v2"]:
        OUT.mkdir(exist_ok=True)
        expected = {}
        for name, (data, answer) in cases().items():
            (OUT / name).write_bytes(data)
            expected[name] = answer
        (OUT / "expected.json").write_text(json.dumps(expected, indent=1, sort_keys=True) + "\n")
        print(f"wrote {len(expected)} files to {OUT}")
    write_v2()


if __name__ == "__main__":
    main()
