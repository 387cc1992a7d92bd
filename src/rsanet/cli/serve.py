"""``rsanet serve CONFIG``: many cameras in one process, durable alerts with evidence, an
HTTP API and a dashboard (see ``docs/deploy.md``)."""

from __future__ import annotations

import argparse
import os
import re
import sys
from pathlib import Path

from rsanet.cli._args import count
from rsanet.cli._precision import add_precision_options, chosen_precision

TOKEN_VARIABLE = "RSANET_SERVE_TOKEN"


def _device(text: str) -> str:
    if not re.fullmatch(r"cpu|cuda(:\d+)?", text):
        raise argparse.ArgumentTypeError(f"expected cpu, cuda or cuda:N, got {text!r}")
    return text


def register(subparsers: argparse._SubParsersAction) -> None:
    parser = subparsers.add_parser(
        "serve",
        help="watch many cameras: alerts, evidence clips, HTTP API and dashboard",
        description=(
            "Run the cameras of CONFIG (YAML) in one process: one reader per camera, batched "
            "model forwards for all of them, alert rules per camera, events stored in "
            "SQLite before any webhook or MQTT message is sent, an evidence clip and snapshot "
            "per alert, and an HTTP API with a dashboard (127.0.0.1 unless a token protects "
            "it). SIGINT or SIGTERM stop it and flush everything."
        ),
    )
    parser.add_argument("config", metavar="CONFIG", help="the serve configuration (YAML)")
    parser.add_argument("--host", help="address to serve HTTP on (default: the config's)")
    parser.add_argument("--port", type=count(0, 65535), help="HTTP port (default: the config's)")
    parser.add_argument(
        "--token",
        help=f"the API token (default: ${TOKEN_VARIABLE}, else the config's); required to "
        "serve on an address other than the loopback",
    )
    parser.add_argument(
        "--device", type=_device, help="cpu, cuda or cuda:N (default: the config's, else cpu)"
    )
    parser.add_argument("--threads", type=count(1, 1024), help="PyTorch threads")
    add_precision_options(parser, half=True)
    parser.set_defaults(func=run)


def apply_overrides(config, args: argparse.Namespace, environ=os.environ):
    """The configuration with the command line's --host, --port, --token (or the
    environment's token), --device, --precision (or --half) and calibration options."""
    from dataclasses import replace

    from rsanet.serve.config import ConfigError

    token = args.token or environ.get(TOKEN_VARIABLE) or config.http.token
    if token is not None and len(token) < 8:
        raise ConfigError("http: token: too short (at least 8 characters)")
    http = replace(
        config.http,
        host=args.host or config.http.host,
        port=config.http.port if args.port is None else args.port,
        token=token,
    )
    precision = chosen_precision(args, default=config.precision)
    calibration = Path(args.calibration) if args.calibration else config.calibration
    return replace(
        config,
        http=http,
        device=args.device or config.device,
        precision=precision,
        calibration=calibration,
        calibration_clips=args.calibration_clips or config.calibration_clips,
        float_from=args.float_from or config.float_from,
    )


def run(args: argparse.Namespace) -> int:
    import logging

    from rsanet.cli import CLIError
    from rsanet.inference.redact import one_line
    from rsanet.serve.config import load_config
    from rsanet.serve.server import Server, describe_summary

    try:
        config = apply_overrides(load_config(args.config), args)
        if args.threads:
            import torch

            torch.set_num_threads(args.threads)
        logging.basicConfig(
            level=logging.WARNING, format="rsanet serve: %(levelname)s: %(message)s"
        )
        server = Server(config)
    except (ValueError, OSError) as error:
        raise CLIError(one_line(error)) from None

    def started() -> None:
        where = f" on {server.url}" if server.url else ""
        print(
            f"rsanet serve: {len(config.cameras)} camera(s), serving{where} (Ctrl-C stops)",
            file=sys.stderr,
            flush=True,
        )

    try:
        summary = server.run(on_started=started)
    except (ValueError, OSError) as error:
        raise CLIError(one_line(error)) from None
    print(describe_summary(summary), file=sys.stderr, flush=True)
    return 0
