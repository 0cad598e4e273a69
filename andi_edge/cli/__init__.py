"""The ``andi-edge`` command. A thin layer: parse arguments, configure logging, call the library, print.

Only this package prints and chooses exit codes. Heavy imports (onnxruntime, torch) happen inside commands.
Commands live by audience: ``detection`` (detect, bench, batch, info), ``field`` (watch, check, status,
service), ``workstation`` (export, dataset, train, prune, quantize, eval), ``classifier`` (the species classifier's).
"""

from __future__ import annotations

import argparse
import io
import logging
import os
import sys
from collections.abc import Callable, Sequence

from andi_edge import __version__
from andi_edge.cli import alerts, classifier, detection, field, review, workstation
from andi_edge.cli.options import EXIT_OK, HelpFormatter
from andi_edge.errors import AndiEdgeError
from andi_edge.logs import configure_logging
from andi_edge.process import limit_malloc_arenas

log = logging.getLogger("andi_edge")

EXIT_INTERNAL_ERROR = 70  # EX_SOFTWARE: a bug in andi-edge, not the user's mistake
EXIT_INTERRUPTED = 130


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="andi-edge",
        description="Detect animals, people and vehicles in camera-trap photos, on the device, without torch.",
        epilog="Run `andi-edge COMMAND --help` for a command's options.",
    )
    parser.add_argument("--version", action="version", version=f"andi-edge {__version__}")
    parser.add_argument(
        "--log-level",
        default=None,
        choices=["debug", "info", "warning", "error"],
        help="default: warning (watch: info)",
    )
    commands = parser.add_subparsers(dest="command", metavar="COMMAND")

    detection.register(commands)
    field.register(commands)
    alerts.register(commands)
    review.register(commands)
    workstation.register(commands)
    classifier.register(commands)
    for command in _every_parser(parser):
        command.formatter_class = HelpFormatter
        if command is not parser and not any("--log-level" in a.option_strings for a in command._actions):
            # global options are accepted after the command too
            command.add_argument(
                "--log-level",
                default=argparse.SUPPRESS,
                choices=["debug", "info", "warning", "error"],
                help="as before the command: how much to log (default: warning; watch: info)",
            )
    return parser


def _every_parser(parser: argparse.ArgumentParser) -> list[argparse.ArgumentParser]:
    found = [parser]
    for action in parser._actions:
        if isinstance(action, argparse._SubParsersAction):
            for sub in dict.fromkeys(action.choices.values()):
                found += _every_parser(sub)
    return found


def main(argv: Sequence[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    if args.command is None:
        parser.print_help()
        return 2
    configure_logging(args.log_level or "warning")
    limit_malloc_arenas()
    # A card's names may hold bytes that are not UTF-8: print them as \xe9 rather than fail on them.
    for stream in (sys.stdout, sys.stderr):
        if isinstance(stream, io.TextIOWrapper):
            stream.reconfigure(errors="backslashreplace")
    handler: Callable[[argparse.Namespace], int] = args.handler
    try:
        return handler(args)
    except AndiEdgeError as exc:
        print(f"andi-edge: error: {exc}", file=sys.stderr)
        return exc.exit_code
    except KeyboardInterrupt:
        print("andi-edge: interrupted", file=sys.stderr)
        return EXIT_INTERRUPTED
    except BrokenPipeError:
        # The reader went away (`andi-edge status | head -1`): not an error. Point stdout at /dev/null so the
        # interpreter's final flush does not raise again.
        devnull = os.open(os.devnull, os.O_WRONLY)
        os.dup2(devnull, sys.stdout.fileno())
        return EXIT_OK
    except Exception as exc:
        log.debug("internal error", exc_info=True)
        print(
            f"andi-edge: internal error: {type(exc).__name__}: {exc}\n"
            "  hint: this is a bug in andi-edge; rerun with --log-level debug for the traceback and report it",
            file=sys.stderr,
        )
        return EXIT_INTERNAL_ERROR


if __name__ == "__main__":
    sys.exit(main())
