"""The service's one typed settings object, read from ``APUDAE_*`` environment variables.

Command-line options of ``apudae serve`` override the environment (``apudae.service.serve``).
Bad values are refused when the object is built, i.e. at start-up, never at the first request.
"""
from __future__ import annotations

import re
from pathlib import Path
from typing import Annotated, Literal

import torch
from pydantic import Field, SecretStr, field_validator, model_validator
from pydantic_settings import BaseSettings, SettingsConfigDict

PositiveInt = Annotated[int, Field(gt=0)]
PositiveFloat = Annotated[float, Field(gt=0)]
MODEL_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]*$")
MIN_TOKEN_LENGTH = 16


class Settings(BaseSettings):
    """Every knob of the service. Sizes in bytes, pixels or images; times in seconds."""

    model_config = SettingsConfigDict(env_prefix="APUDAE_", extra="forbid")

    model_dir: Path = Field(Path("models"), description="directory holding one sub-directory per bundle")
    default_model: str | None = Field(None, description="model used when a request names none (default: mnist when "
                                            "loaded, else the first bundle loaded, by directory name)")
    device: str = Field("auto", description="'auto' (CUDA when present, else CPU), 'cpu', 'cuda' or 'cuda:N'")
    precision: Literal["auto", "fp32", "bf16"] = Field(
        "auto", description="purification loop precision: fp32, bf16 autocast, or auto: bf16 on CPUs with "
        "AMX-BF16, else fp32 (see docs/PERFORMANCE.md)")
    host: str = Field("127.0.0.1", description="address uvicorn binds")
    port: int = Field(8000, ge=1, le=65535, description="port uvicorn binds")
    max_batch_size: PositiveInt = Field(32, description="images per batch at most")
    max_batch_wait: PositiveFloat = Field(0.005, description="seconds a batch waits to fill up")
    max_queue_size: PositiveInt = Field(256, description="images waiting at most; beyond it requests get 429")
    request_deadline: PositiveFloat = Field(30.0, description="seconds a request may wait and run before it gets 503")
    max_body_bytes: PositiveInt = Field(10 * 2**20, description="largest request body; larger gets 413")
    max_pixels: PositiveInt = Field(4096 * 4096, description="largest decoded image (width x height); larger gets 422")
    max_images: PositiveInt = Field(64, description="images per request at most")
    max_photo_pixels: PositiveInt = Field(25_000_000, description="largest decoded image (width x height) for a "
                                          "bundle that declares its preprocessing (photos of any size, e.g. "
                                          "imagenet); larger gets 422")
    max_photo_images: PositiveInt = Field(32, description="images per request at most for a bundle that declares "
                                          "its preprocessing (and never more than max_queue_size)")
    admin_token: SecretStr | None = Field(None, description="bearer token of the admin routes; unset disables them")
    eval_dir: Path = Field(Path("evaluations"), description="where /evaluate jobs and their results are written")
    eval_max_samples: PositiveInt = Field(1000, description="largest sample count an /evaluate job may ask for")
    shutdown_grace: PositiveFloat = Field(30.0, description="seconds to finish accepted requests on shutdown")
    log_level: str = Field("info", description="debug, info, warning or error (the access log is at info)")
    access_log: bool = Field(True, description="one line per request on the apudae.access logger, at info level "
                             "(method, path without query, status, latency, request id, model); false turns it off")

    @field_validator("model_dir")
    @classmethod
    def _model_dir_exists(cls, value: Path) -> Path:
        if not value.is_dir():
            raise ValueError(f"model directory {value} does not exist; set APUDAE_MODEL_DIR or --model-dir")
        return value

    @field_validator("default_model")
    @classmethod
    def _model_name(cls, value: str | None) -> str | None:
        if value is not None and not MODEL_NAME.match(value):
            raise ValueError(f"{value!r} is not a model name (letters, digits, '_', '.', '-')")
        return value

    @field_validator("device")
    @classmethod
    def _device(cls, value: str) -> str:
        if value == "auto":
            return "cuda" if torch.cuda.is_available() else "cpu"
        if value != "cpu" and not re.fullmatch(r"cuda(:\d+)?", value):
            raise ValueError(f"device {value!r} is not one of auto, cpu, cuda, cuda:N")
        if value.startswith("cuda"):
            index = int(value.partition(":")[2] or 0)
            if not torch.cuda.is_available() or index >= torch.cuda.device_count():
                raise ValueError(f"device {value!r} asked for but CUDA has no such device; use auto or cpu")
        return value

    @field_validator("admin_token")
    @classmethod
    def _token_length(cls, value: SecretStr | None) -> SecretStr | None:
        if value is not None and len(value.get_secret_value()) < MIN_TOKEN_LENGTH:
            raise ValueError(f"admin token must have at least {MIN_TOKEN_LENGTH} characters")
        return value

    @field_validator("log_level")
    @classmethod
    def _log_level(cls, value: str) -> str:
        if value.lower() not in ("debug", "info", "warning", "error"):
            raise ValueError(f"log level {value!r} is not one of debug, info, warning, error")
        return value.lower()

    @model_validator(mode="after")
    def _images_fit_queue(self) -> "Settings":
        if self.max_images > self.max_queue_size:
            raise ValueError(f"max_images ({self.max_images}) exceeds max_queue_size ({self.max_queue_size}): "
                             "no request that large could ever be queued")
        return self

    def image_limits(self, photos: bool) -> tuple[int, int]:
        """(images per request, pixels per decoded image) for a bundle that takes photos of any size (it
        declares its preprocessing: ``max_photo_*``, the images never more than the queue holds) or one that
        takes images at its input size."""
        if photos:
            return min(self.max_photo_images, self.max_queue_size), self.max_photo_pixels
        return self.max_images, self.max_pixels
