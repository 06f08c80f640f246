"""``apudae serve``: settings from the environment (``APUDAE_*``) and command-line overrides, then uvicorn.

One process serves one device (``--device``); to use several GPUs run one process (or one
container / pod) per GPU behind a load balancer (deploy/).
"""
from __future__ import annotations

import argparse
import logging

import uvicorn
from pydantic import ValidationError

from apudae.service.main import create_app
from apudae.service.settings import Settings
from apudae.service.state import ServiceState

log = logging.getLogger(__name__)


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """One option per setting; each overrides its APUDAE_* environment variable. A setting whose description
    says its default in words shows that; otherwise the help ends with its default value ("unset" for None)."""
    for name, field in Settings.model_fields.items():
        option = "--" + name.replace("_", "-")
        env = f"APUDAE_{name.upper()}"
        shown = "" if "default" in field.description else f"; default {'unset' if field.default is None else field.default}"
        metavar = "true|false" if field.annotation is bool else name.split("_")[-1].upper()
        parser.add_argument(option, dest=name, default=None, metavar=metavar,
                            help=f"{field.description} (env {env}{shown})")


class _Server(uvicorn.Server):
    """uvicorn that reports not-ready the moment a shutdown signal arrives."""

    def __init__(self, config: uvicorn.Config, state: ServiceState):
        super().__init__(config)
        self.service_state = state

    def handle_exit(self, sig, frame) -> None:
        self.service_state.begin_shutdown()
        super().handle_exit(sig, frame)


def run(args: argparse.Namespace) -> int:
    """Start the service; 2 for bad settings, 1 when it cannot start, 0 after a clean shutdown."""
    overrides = {name: value for name, value in vars(args).items() if value is not None}
    try:
        settings = Settings(**overrides)
    except ValidationError as err:
        logging.basicConfig(level=logging.ERROR, format="%(levelname)s %(name)s: %(message)s")
        for error in err.errors():
            where = ".".join(str(p) for p in error["loc"]) or "settings"
            log.error("bad setting %s: %s", where, error["msg"].removeprefix("Value error, "))
        return 2
    logging.basicConfig(level=settings.log_level.upper(), format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    app = create_app(settings)
    config = uvicorn.Config(app, host=settings.host, port=settings.port, log_level=settings.log_level,
                            timeout_graceful_shutdown=int(settings.shutdown_grace), access_log=False)
    server = _Server(config, app.state.service)
    server.run()
    return 0 if server.started else 1
