"""Bodies of the Open Inference Protocol (v2) routes: the inference request as it is validated, the
request parameters each model takes, and the answers as OpenAPI documents them."""
from __future__ import annotations

from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field

from apudae.models.detector import FPRS
from apudae.models.purification import VARIANTS
from apudae.service.api.deps import BUDGET_HELP, MAX_STEPS

Strict = ConfigDict(extra="forbid", strict=True)


class BinaryParameters(BaseModel):
    """Parameters of one input tensor: the binary extension's size of its data in bytes."""

    model_config = Strict
    binary_data_size: int | None = Field(None, ge=0)


class RequestInput(BaseModel):
    """One input tensor: JSON ``data`` (flat or nested, row major), or binary data after the JSON."""

    name: str
    shape: list[int]
    datatype: str
    parameters: BinaryParameters = BinaryParameters()
    data: Any = None


class OutputParameters(BaseModel):
    """Parameters of one requested output: ``binary_data`` true sends it as binary data, false as JSON
    (None: as the request's ``binary_data_output`` says)."""

    model_config = Strict
    binary_data: bool | None = None


class RequestOutput(BaseModel):
    name: str
    parameters: OutputParameters = OutputParameters()


class PurifyParameters(BaseModel):
    """Request parameters of a ``{bundle}-purify`` model: the purification and detector options of /purify,
    and the binary extension's ``binary_data_output``."""

    model_config = Strict
    variant: Literal[VARIANTS] | None = Field(None, description="purification variant; default: the bundle's")
    n: int | None = Field(None, ge=0, le=MAX_STEPS, description="most purification steps")
    seed: int | None = Field(None, ge=0, lt=2**63, description="makes the noise repeatable")
    budget: float | None = Field(None, gt=0, le=1, description=BUDGET_HELP)
    fpr: Literal[FPRS] | None = Field(None, description="false-positive rate of the detector's threshold "
                                                         "(output flagged); default 0.01")
    binary_data_output: bool = Field(False, description="send every output as binary data unless the output "
                                                        "says otherwise")


class ClassifyParameters(PurifyParameters):
    """Request parameters of a ``{bundle}`` model: /classify's, ``purify`` included."""

    purify: bool = Field(True, description="purify before classifying")


class InferenceRequest(BaseModel):
    """The JSON inference request (``$inference_request``); ``parameters`` are checked per model."""

    model_config = ConfigDict(extra="forbid")
    id: str | None = None
    parameters: dict[str, Any] = {}
    inputs: list[RequestInput] = Field(min_length=1)
    outputs: list[RequestOutput] | None = None


ERROR = {"type": "object", "required": ["error"], "properties": {
    "error": {"type": "string", "description": "what went wrong and what to fix"}}}
TENSOR_METADATA = {"type": "object", "required": ["name", "datatype", "shape"], "properties": {
    "name": {"type": "string"}, "datatype": {"type": "string"},
    "shape": {"type": "array", "items": {"type": "integer"}}}}
SERVER_METADATA = {"type": "object", "required": ["name", "version", "extensions"], "properties": {
    "name": {"type": "string"}, "version": {"type": "string"},
    "extensions": {"type": "array", "items": {"type": "string"}}}}
MODEL_METADATA = {"type": "object", "required": ["name", "platform", "inputs", "outputs"], "properties": {
    "name": {"type": "string"}, "platform": {"type": "string"},
    "inputs": {"type": "array", "items": TENSOR_METADATA}, "outputs": {"type": "array", "items": TENSOR_METADATA},
    "parameters": {"type": "object"}}}
INFERENCE_RESPONSE = {"type": "object", "required": ["model_name", "outputs"], "properties": {
    "model_name": {"type": "string"}, "id": {"type": "string"},
    "outputs": {"type": "array", "items": {"type": "object", "required": ["name", "datatype", "shape"]}}}}


def answers(ok: dict, *, binary: bool = False) -> dict:
    """OpenAPI ``responses`` of a v2 route: ``ok`` for 200 (JSON, and binary-extension bodies when
    ``binary``), the protocol's error object for every 4xx and for 503."""
    content = {"application/json": {"schema": ok}}
    if binary:
        content["application/octet-stream"] = {"schema": {"type": "string", "format": "binary"},
                                               "description": "the JSON response, then binary outputs"}
    error = {"description": "the protocol's error object", "content": {"application/json": {"schema": ERROR}}}
    return {200: {"description": "success", "content": content}, "4XX": error, 503: error}


INFERENCE_REQUEST = {"type": "object", "required": ["inputs"], "properties": {
    "id": {"type": "string"}, "parameters": {"type": "object"},
    "inputs": {"type": "array", "minItems": 1, "items": {
        "type": "object", "required": ["name", "shape", "datatype"], "properties": {
            "name": {"type": "string"}, "shape": {"type": "array", "items": {"type": "integer", "minimum": 0}},
            "datatype": {"type": "string", "enum": ["UINT8", "FP32"]}, "parameters": {"type": "object"},
            "data": {"type": "array"}}}},
    "outputs": {"type": "array", "items": {"type": "object", "required": ["name"], "properties": {
        "name": {"type": "string"}, "parameters": {"type": "object"}}}}}}
INFER_BODY = {"requestBody": {"required": True, "content": {
    "application/json": {"schema": INFERENCE_REQUEST},
    "application/octet-stream": {"schema": {"type": "string", "format": "binary"},
                                 "description": "binary tensor extension: the JSON request of "
                                                "Inference-Header-Content-Length bytes, then the binary inputs"}}}}
