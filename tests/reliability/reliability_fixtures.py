"""Shared helpers of the reliability tests: the bad-file and bad-request corpus and the service tests' fixtures.

The service tests' fixtures (``client``, ``make_settings``, ``admin``...) live in
tests/service/service_fixtures.py; this module puts that directory on ``sys.path`` so reliability
tests import them by name (``from reliability_fixtures import client``) wherever pytest starts.
No conftest.py here, so ``from conftest import ...`` keeps meaning tests/conftest.py.
"""
from __future__ import annotations

import json
import sys
from dataclasses import dataclass
from pathlib import Path

TESTS = Path(__file__).resolve().parents[1]
if str(TESTS / "service") not in sys.path:
    sys.path.insert(0, str(TESTS / "service"))

from service_fixtures import ADMIN_TOKEN, admin, client, digit_png, make_settings, png_bytes  # noqa: E402,F401

CORPUS = Path(__file__).resolve().parent / "corpus"
WAIT = 30.0  # seconds: bound on every wait in these tests


@dataclass(frozen=True)
class BadFile:
    """One corpus file and its documented answer (see make_corpus.py)."""

    name: str
    data: bytes
    status: int
    words: str | None = None
    mean: float | None = None
    top_half_mean: float | None = None


def bad_files() -> list[BadFile]:
    """The committed corpus, in name order."""
    expected = json.loads((CORPUS / "expected.json").read_text())
    return [BadFile(name, (CORPUS / name).read_bytes(), **answer) for name, answer in sorted(expected.items())]


@dataclass(frozen=True)
class BadRequest:
    """One v2 corpus body, its Inference-Header-Content-Length (None: not sent) and documented answer."""

    name: str
    body: bytes
    header_length: int | None
    status: int
    words: str | None = None


def bad_requests() -> list[BadRequest]:
    """The committed v2 corpus (``corpus/v2``), in name order."""
    expected = json.loads((CORPUS / "v2" / "expected.json").read_text())
    return [BadRequest(name, (CORPUS / "v2" / name).read_bytes(), **answer) for name, answer in sorted(expected.items())]


def files_field(*payloads: tuple[str, bytes], content_type: str = "image/png") -> list:
    """Multipart ``files`` entries for (name, bytes) pairs."""
    return [("files", (name, data, content_type)) for name, data in payloads]
