"""The `genrekit` command: one sub-module per sub-command, imported cheaply.

Each command module defines HELP, ``add_arguments(parser)`` and ``run(args) -> int`` and imports its
heavy dependencies inside ``run`` so that ``genrekit --help`` and start-up stay fast.

Exit codes (all commands): 0 success, 1 some inputs failed (others completed) or a genrekit error,
2 usage error, 130 interrupted.
"""

from __future__ import annotations

import argparse
import importlib
import sys

from genrekit import __version__

# Sub-commands in the order `genrekit --help` lists them: command NAME is the module genrekit.cli.NAME_cmd.
COMMANDS = [
    "info", "features", "train", "compare", "eda", "evaluate", "finetune",
    "predict", "tags", "embed", "demo", "export", "serve",
    "tag", "playlists", "similar",  # library tools
]


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="genrekit",
        description="Music genre classification: features, honest evaluation, pretrained prediction.",
    )
    parser.add_argument("--version", action="version", version=f"genrekit {__version__}")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")
    for name in COMMANDS:
        mod = importlib.import_module(f"genrekit.cli.{name}_cmd")
        p = sub.add_parser(name, help=mod.HELP, description=getattr(mod, "DESCRIPTION", mod.HELP))
        mod.add_arguments(p)
        p.set_defaults(_run=mod.run)
    return parser


def main(argv: list[str] | None = None) -> int:
    from genrekit.errors import GenrekitError

    parser = build_parser()
    args = parser.parse_args(argv)
    if not getattr(args, "_run", None):
        parser.print_help()
        return 2
    try:
        return int(args._run(args) or 0)
    except GenrekitError as exc:
        print(f"genrekit {args.command}: error: {exc}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        print(f"genrekit {args.command}: interrupted", file=sys.stderr)
        return 130
    except BrokenPipeError:
        return 0


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
