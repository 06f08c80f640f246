"""One v2 inference request read and checked into what the batcher runs, and its answer assembled.

Reading: the body (JSON, or JSON then binary tensors), the inference request's fields, the model's request
parameters, the one input ``images`` (shape checked before its data is read) and the requested outputs.
Every fault raises HTTPException 400 (415 for a compressed body; 422, as on /classify, for ``fpr`` on a
bundle without detector thresholds) whose message says what to fix.
"""
from __future__ import annotations

from dataclasses import dataclass

from fastapi import HTTPException, Request, Response
from pydantic import ValidationError
from starlette.requests import ClientDisconnect

from apudae.models.purification import PurifySettings
from apudae.service.api.routes.purify import Detection, detection_of
from apudae.service.api.v2_models import DATATYPES, INPUT, Batch, Images, ProtocolModel, layout_of, to_images
from apudae.service.api.v2_schemas import InferenceRequest, PurifyParameters, RequestInput
from apudae.service.api.v2_tensors import (HEADER_LENGTH, BinaryReader, TensorError, parse_header, read_tensor,
                                           response_body, split_body, write_tensor)


@dataclass(frozen=True)
class Inference:
    """A checked inference request: its images, the purification settings (None: classify without purifying),
    the detector at the request's ``fpr``, the outputs to answer in order with whether each goes as binary
    data, whether the classify model purifies (``purify``; always true for a purify model) and the request's
    id."""

    images: Images
    settings: PurifySettings | None
    detection: Detection
    outputs: list[tuple[str, bool]]
    purify: bool
    id: str | None


def _first_error(err: ValidationError, where: str) -> str:
    first = err.errors()[0]
    loc = ".".join(str(part) for part in first.get("loc", ()))
    return f"invalid {where}{'.' + loc if loc else ''}: {first.get('msg')}"


def _parameters(model: ProtocolModel, given: dict) -> PurifyParameters:
    takes = ", ".join(model.parameters.model_fields)
    unknown = [name for name in given if name not in model.parameters.model_fields]
    if unknown:
        raise HTTPException(400, f"unknown parameter {unknown[0]!r}; model {model.name!r} takes: {takes}")
    try:
        return model.parameters.model_validate(given)
    except ValidationError as err:
        raise HTTPException(400, _first_error(err, "parameters")) from None


def _settings(model: ProtocolModel, parameters: PurifyParameters) -> PurifySettings | None:
    if not getattr(parameters, "purify", True):
        return None
    try:
        return model.runtime.default_settings(budget=parameters.budget, variant=parameters.variant, n=parameters.n,
                                             seed=parameters.seed)
    except ValueError as err:
        raise HTTPException(400, str(err)) from None


def _images(model: ProtocolModel, inputs: list[RequestInput], reader: BinaryReader, max_images: int) -> Images:
    names = [tensor.name for tensor in inputs]
    if names != [INPUT]:
        raise HTTPException(400, f"model {model.name!r} takes one input {INPUT!r}; the request has {names}")
    tensor = inputs[0]
    if tensor.datatype not in DATATYPES:
        raise TensorError(f"input {INPUT!r} has datatype {tensor.datatype!r}; send UINT8 (0-255) or FP32 (0-1)")
    layout = layout_of(model, tensor.shape, max_images)
    size = tensor.parameters.binary_data_size
    if size is not None and tensor.data is not None:
        raise TensorError(f"input {INPUT!r} has both 'data' and binary_data_size; send one of them")
    binary = reader.take(INPUT, size) if size is not None else None
    reader.finish()
    return to_images(read_tensor(INPUT, tensor.datatype, tensor.shape, tensor.data, binary), tensor.datatype,
                     layout)


def _outputs(model: ProtocolModel, request: InferenceRequest, purify: bool, binary: bool) -> list[tuple[str, bool]]:
    available = model.outputs(purify)
    if request.outputs is None:
        return [(name, binary) for name in available]
    unknown = [o.name for o in request.outputs if o.name not in available]
    if unknown:
        without = " without purification (purify=false)" if not purify and not model.purify_only else ""
        raise HTTPException(400, f"unknown output {unknown[0]!r}; model {model.name!r}{without} gives: "
                                 f"{', '.join(available)}")
    return [(o.name, binary if o.parameters.binary_data is None else o.parameters.binary_data)
            for o in request.outputs]


async def read_inference(request: Request, model: ProtocolModel, max_images: int) -> Inference:
    """The inference request of ``request`` for ``model``; HTTPException 400/415 with what to fix."""
    encoding = request.headers.get("content-encoding", "identity").lower()
    if encoding != "identity":
        raise HTTPException(415, f"Content-Encoding {encoding!r} is not supported; send the body uncompressed")
    body = bytearray()
    try:
        async for chunk in request.stream():
            body += chunk
    except ClientDisconnect:
        raise HTTPException(400, "the client disconnected before the whole body arrived") from None
    try:
        parts = split_body(body, request.headers.get(HEADER_LENGTH))
        parsed = parse_header(parts.header)
        try:
            inference = InferenceRequest.model_validate(parsed)
        except ValidationError as err:
            raise TensorError(_first_error(err, "inference request")) from None
        if parts.binary.nbytes == 0 and any(t.parameters.binary_data_size for t in inference.inputs) \
                and HEADER_LENGTH not in request.headers:
            raise TensorError("binary_data_size needs the Inference-Header-Content-Length header giving the "
                              "JSON's length in bytes")
        parameters = _parameters(model, inference.parameters)
        images = _images(model, inference.inputs, BinaryReader(parts.binary), max_images)
    except TensorError as err:
        raise HTTPException(400, str(err)) from None
    purify = getattr(parameters, "purify", True)
    return Inference(images, _settings(model, parameters), detection_of(model.runtime, parameters.fpr, "label"),
                     _outputs(model, inference, purify, parameters.binary_data_output), purify, inference.id)


def answer(model: ProtocolModel, inference: Inference, batch: Batch) -> Response:
    """The inference response: the requested outputs of ``batch``, JSON or binary."""
    extract = model.outputs(inference.purify)
    header: dict = {"model_name": model.name, "outputs": []}
    if inference.id is not None:
        header["id"] = inference.id
    blobs = []
    for name, binary in inference.outputs:
        out, blob = write_tensor(name, extract[name][1](batch), binary)
        header["outputs"].append(out)
        if blob is not None:
            blobs.append(blob)
    body, media_type, headers = response_body(header, blobs)
    return Response(body, media_type=media_type, headers=headers)
