"""Read the images of a request body: multipart field ``files``, or JSON ``{"images": [base64, ...]}``.

Only reads bytes and counts them; decoding is ``service.imaging``'s job.
"""
from __future__ import annotations

import base64
import binascii
import json
from dataclasses import dataclass

from fastapi import HTTPException, Request
from pydantic import BaseModel, Field, ValidationError
from starlette.datastructures import UploadFile
from starlette.exceptions import HTTPException as StarletteHTTPException

USAGE = "send multipart/form-data with the images in the field 'files', or JSON {\"images\": [\"<base64>\", ...]}"

OPENAPI_BODY = {"requestBody": {"required": True, "content": {
    "multipart/form-data": {"schema": {"type": "object", "required": ["files"], "properties": {
        "files": {"type": "array", "items": {"type": "string", "format": "binary"}}}}},
    "application/json": {"schema": {"type": "object", "required": ["images"], "properties": {
        "images": {"type": "array", "items": {"type": "string", "format": "byte"},
                   "description": "base64 images (a data: URL prefix is allowed)"}}}},
}}}


class ImagesIn(BaseModel):
    """JSON body of the image routes."""

    images: list[str] = Field(min_length=1)


@dataclass(frozen=True)
class Upload:
    """One uploaded file: a display name (for error messages) and its bytes."""

    name: str
    data: bytes


def _too_many(count: int, max_images: int) -> HTTPException:
    return HTTPException(422, f"too many images: at most {max_images} per request; split them over several requests"
                         + (f" (got {count})" if count else ""))


async def read_uploads(request: Request, max_images: int) -> list[Upload]:
    """The request's images, at most ``max_images``; raises HTTPException (400/415/422) with what to fix."""
    media = request.headers.get("content-type", "").split(";")[0].strip().lower()
    if media == "multipart/form-data":
        uploads = await _read_multipart(request, max_images)
    elif media == "application/json":
        uploads = _read_json(await request.body())
    else:
        raise HTTPException(415, f"unsupported content type {media or 'none'!r}; {USAGE}")
    if not uploads:
        raise HTTPException(422, f"no images in the request; {USAGE}")
    if len(uploads) > max_images:
        raise _too_many(len(uploads), max_images)
    return uploads


async def _read_multipart(request: Request, max_images: int) -> list[Upload]:
    try:
        async with request.form(max_files=max_images, max_fields=16) as form:
            files = form.getlist("files")
            if any(not isinstance(f, UploadFile) for f in files):
                raise HTTPException(422, f"the field 'files' must hold files, not text; {USAGE}")
            return [Upload(f.filename or f"files[{i}]", await f.read()) for i, f in enumerate(files)]
    except StarletteHTTPException as err:
        if err.status_code == 400 and "Too many files" in str(err.detail):
            raise _too_many(0, max_images) from None
        if err.status_code == 400:
            raise HTTPException(400, f"malformed multipart body ({err.detail}); {USAGE}") from None
        raise


def _read_json(body: bytes) -> list[Upload]:
    try:
        images = ImagesIn.model_validate(json.loads(body)).images
    except (json.JSONDecodeError, UnicodeDecodeError):
        raise HTTPException(400, f"the body is not valid JSON; {USAGE}") from None
    except ValidationError as err:
        raise HTTPException(422, f"invalid JSON body ({err.errors()[0]['msg']}); {USAGE}") from None
    uploads = []
    for i, text in enumerate(images):
        if text.startswith("data:"):
            text = text.partition(",")[2]
        try:
            uploads.append(Upload(f"images[{i}]", base64.b64decode(text, validate=True)))
        except (binascii.Error, ValueError):
            raise HTTPException(422, f"images[{i}] is not valid base64; encode the file's bytes with base64") from None
    return uploads
