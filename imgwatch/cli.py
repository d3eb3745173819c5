"""Command line: flags, logging, exit codes. The work itself lives elsewhere.

Exit codes: 0 success; 1 finished but some files failed; 64 usage error;
75 database unreachable (try again later); 78 configuration error.
"""

from __future__ import annotations

import argparse
import importlib
import logging
import os
import sys
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any, NoReturn

from imgwatch import __version__
from imgwatch.config import ENV_PREFIX, Settings, load_settings
from imgwatch.errors import ConfigError, ImgwatchError
from imgwatch.logsetup import configure_logging

log = logging.getLogger("imgwatch")

EXIT_USAGE = os.EX_USAGE


# Passwords are read from a file named on the command line, never taken as a value:
# a value in argv is visible to every user through `ps`.
_FILE_ONLY_SECRETS = {"db_password", "wp_password"}


# What runs, each `run(settings, args) -> int` in a module of imgwatch/commands
# (no command: the daemon). Imported once chosen: a `--rescan` started from a
# timer does not load the daemon's modules, nor the operator commands'.
Runner = Callable[[Settings, argparse.Namespace], int]


def _runner(args: argparse.Namespace) -> Runner:
    if args.rescan:
        name = "dry_run" if args.dry_run else "rescan"
    elif args.command:
        name = args.command
    else:
        from imgwatch.daemon.app import Daemon

        return lambda settings, _args: Daemon(settings).run()
    run: Runner = importlib.import_module(f"imgwatch.commands.{name}").run
    return run


class _Parser(argparse.ArgumentParser):
    def error(self, message: str) -> NoReturn:
        # EX_USAGE rather than argparse's 2, so the unit's RestartPreventExitStatus
        # can tell a wrong flag (fix the unit) from a crash (restart).
        self.print_usage(sys.stderr)
        self.exit(EXIT_USAGE, f"{self.prog}: error: {message}\n")


def build_parser() -> argparse.ArgumentParser:
    parser = _Parser(
        prog="imgwatch",
        description="Keep a folder of images, a SQL database and a WordPress media library "
        "in step. Without a command, runs as a daemon watching the image directory.",
        epilog="Every setting can also be given as an environment variable "
        f"{ENV_PREFIX}<NAME> or in an env file (default lookup: /etc/imgwatch/imgwatch.env, "
        "then ./imgwatch.env). Exit codes: 0 ok, 1 some files failed, 64 usage, "
        "75 database unreachable, 78 configuration error.",
    )
    parser.add_argument(
        "--rescan",
        action="store_true",
        help="reconcile the image directory once, then exit "
        "(without it imgwatch runs as a daemon, watching the directory)",
    )
    parser.add_argument(
        "--dry-run",
        action="store_true",
        help="with --rescan: say what would be recorded, uploaded and marked missing, "
        "and change nothing",
    )
    parser.add_argument("--version", action="version", version=f"imgwatch {__version__}")
    _add_settings(parser)
    commands = parser.add_subparsers(dest="command", metavar="COMMAND", parser_class=_Parser)
    check = commands.add_parser(
        "check",
        help="validate the settings, the database, WordPress and the image directory",
        description="Validate the settings, open the database, run the WordPress "
        "preflight, look at the image directory and the inotify limits, and say what "
        "would happen. Exit 0, or 78 with the first problem.",
    )
    _add_settings(check)
    status = commands.add_parser(
        "status",
        help="counts by status, recent failures and rejections, the last scan",
        description="Counts of rows by status, the most recent failures and rejections "
        "with their reasons, and the last scan, read from the database.",
    )
    status.add_argument("--json", action="store_true", help="one JSON object, for scripts")
    status.add_argument(
        "--limit",
        type=int,
        default=10,
        metavar="N",
        help="how many recent failures and rejections to show (default 10)",
    )
    _add_settings(status)
    retry = commands.add_parser(
        "retry",
        help="make failed or rejected rows (or the named files) due again",
        description="Make rows due again: failed uploads are tried again, other rows "
        "are read again (and their media item given every field again). The running "
        "daemon picks them up within a minute, or the next --rescan does. Without "
        "--failed, --rejected, --confirm-deletes or FILE: --failed.",
    )
    retry.add_argument("--failed", action="store_true", help="every failed row")
    retry.add_argument("--rejected", action="store_true", help="every rejected row")
    retry.add_argument(
        "--confirm-deletes",
        action="store_true",
        help="the deletions the mass-deletion guard holds are meant: the next reconcile "
        "applies them",
    )
    retry.add_argument(
        "files",
        nargs="*",
        metavar="FILE",
        help="files by path, or by name relative to the image directory",
    )
    _add_settings(retry)
    return parser


def _add_settings(parser: argparse.ArgumentParser) -> None:
    # SUPPRESS: a flag not given leaves no attribute, so a command's parser does not
    # overwrite a setting given before the command with its own default.
    parser.add_argument(
        "--env-file",
        type=Path,
        metavar="PATH",
        default=argparse.SUPPRESS,
        help="read settings from PATH",
    )
    group = parser.add_argument_group(
        "settings", f"each one is also {ENV_PREFIX}<NAME> in the environment or env file"
    )
    for name, info in Settings.model_fields.items():
        flag = "--" + name.replace("_", "-")
        if name in _FILE_ONLY_SECRETS:
            group.add_argument(
                flag + "-file",
                dest=name + "_file",
                type=Path,
                metavar="PATH",
                default=argparse.SUPPRESS,
                help=f"read the {info.description} from PATH",
            )
            continue
        group.add_argument(
            flag,
            dest=name,
            metavar=name.upper(),
            default=argparse.SUPPRESS,
            help=info.description,
        )


def settings_overrides(args: argparse.Namespace) -> dict[str, Any]:
    """The settings given as flags; secret files are read here."""
    overrides: dict[str, Any] = {}
    for name in Settings.model_fields:
        if name in _FILE_ONLY_SECRETS:
            path: Path | None = getattr(args, name + "_file", None)
            if path is not None:
                overrides[name] = _read_secret_file(path, name)
            continue
        value = getattr(args, name, None)
        if value is not None:
            overrides[name] = value
    return overrides


def _read_secret_file(path: Path, name: str) -> str:
    try:
        # One trailing newline is what `echo pw > file` adds; the rest is the password.
        return path.read_text(encoding="utf-8").removesuffix("\n")
    except (OSError, UnicodeDecodeError) as exc:
        raise ConfigError(f"cannot read --{name.replace('_', '-')}-file: {exc}") from None


def main(argv: Sequence[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    if args.dry_run and not args.rescan:
        parser.error("--dry-run goes with --rescan")
    if args.command and args.rescan:
        parser.error(f"--rescan does not go with the {args.command} command")
    configure_logging("INFO")
    try:
        overrides = settings_overrides(args)
        settings = load_settings(overrides, getattr(args, "env_file", None))
        configure_logging(settings.log_level)
        if "db_url" in overrides and settings.database_url().password:
            log.warning(
                "--db-url carries a password that other users can see with ps; "
                "put IMGWATCH_DB_URL in the env file instead"
            )
        return _runner(args)(settings, args)
    except ImgwatchError as exc:
        log.error("%s", exc)
        return exc.exit_code
    except KeyboardInterrupt:
        log.error("interrupted")
        return 130
