"""Command-line plumbing: one frozen dataclass per command generates its argparse CLI.

Each field's `help` metadata becomes the flag's help text (defaults shown), `--config FILE.toml` supplies
any option (flags given on the command line win), and `main()` wrappers turn a MinifreezeError into the
one-line message users should see, never a traceback.
"""

from __future__ import annotations

import argparse
import dataclasses
import sys
import tomllib
import types
import typing
import warnings
from collections.abc import Callable
from pathlib import Path
from typing import Any, TypeVar

from .errors import MinifreezeError

T = TypeVar("T")


def option(default: Any, help: str, choices: tuple | None = None, positional: bool = False) -> Any:
    """A dataclass field that knows its command-line help."""
    meta = {"help": help, "choices": choices, "positional": positional}
    if isinstance(default, list):
        return dataclasses.field(default_factory=lambda: list(default), metadata=meta)
    return dataclasses.field(default=default, metadata=meta)


def base_type(annotation: Any) -> tuple[type, bool]:
    """(scalar type, is_list) of a field annotation such as `int | None` or `list[str]`."""
    if isinstance(annotation, str):
        annotation = eval(annotation, {"list": list})  # noqa: S307 - our own annotations only
    origin = typing.get_origin(annotation)
    if origin in (typing.Union, types.UnionType):
        args = [a for a in typing.get_args(annotation) if a is not type(None)]
        return base_type(args[0])
    if origin is list:
        return typing.get_args(annotation)[0], True
    return annotation, False


def build_parser(cls: type, prog: str, description: str) -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog=prog, description=description, formatter_class=argparse.ArgumentDefaultsHelpFormatter
    )
    parser.add_argument(
        "--config", metavar="FILE.toml", help="read options from a TOML file; flags override it"
    )
    for f in dataclasses.fields(cls):
        kind, is_list = base_type(f.type)
        meta = f.metadata
        default = f.default_factory() if f.default is dataclasses.MISSING else f.default
        if meta.get("positional"):
            parser.add_argument(f.name, nargs="*", default=default, help=meta["help"])
        elif kind is bool:
            parser.add_argument(
                "--" + f.name.replace("_", "-"),
                action=argparse.BooleanOptionalAction,
                default=default,
                help=meta["help"],
            )
        else:
            parser.add_argument(
                "--" + f.name.replace("_", "-"),
                type=kind,
                nargs="+" if is_list else None,
                default=default,
                choices=meta.get("choices"),
                help=meta["help"],
            )
    return parser


def parse(cls: type[T], argv: list[str] | None, prog: str, description: str) -> T:
    """Dataclass instance from TOML file (optional) + command line; unknown TOML keys are an error."""
    parser = build_parser(cls, prog, description)
    args = parser.parse_args(argv)
    values = {f.name: getattr(args, f.name) for f in dataclasses.fields(cls)}
    if args.config:
        path = Path(args.config)
        try:
            file_values = tomllib.loads(path.read_text(encoding="utf-8"))
        except FileNotFoundError:
            raise MinifreezeError(f"--config {path}: no such file") from None
        except tomllib.TOMLDecodeError as err:
            raise MinifreezeError(f"--config {path}: not valid TOML ({err})") from None
        file_values = {k.replace("-", "_"): v for k, v in file_values.items()}
        unknown = sorted(set(file_values) - set(values))
        if unknown:
            raise MinifreezeError(f"--config {path}: unknown option(s) {', '.join(unknown)}; see --help")
        given = set(vars(given_only(cls, prog, description, argv)))
        for f in dataclasses.fields(cls):
            if f.name in file_values and f.name not in given:
                values[f.name] = coerce(file_values[f.name], f, path)
    return cls(**values)


def given_only(cls: type, prog: str, description: str, argv: list[str] | None) -> argparse.Namespace:
    """The options the user actually typed (a parser whose defaults are all suppressed)."""
    parser = build_parser(cls, prog, description)
    for action in parser._actions:
        action.default = argparse.SUPPRESS
    return parser.parse_args(argv)


def coerce(value: Any, f: dataclasses.Field, path: Path) -> Any:
    kind, is_list = base_type(f.type)
    try:
        if is_list:
            items = value if isinstance(value, list) else str(value).split(",")
            return [kind(v) for v in items]
        return value if isinstance(value, kind) else kind(value)
    except (TypeError, ValueError):
        raise MinifreezeError(
            f"--config {path}: option {f.name} = {value!r} is not a {kind.__name__}"
        ) from None


class Stopped(Exception):
    """A command stopped by signal `signum` after saving its work: `run` prints how to go on and exits with
    128 + signum, the status a shell gives a process the signal ended (130 for SIGINT, 143 for SIGTERM)."""

    def __init__(self, message: str, signum: int):
        super().__init__(message)
        self.signum = signum


def one_line_warning(message, category, filename, lineno, file=None, line=None) -> None:
    """A library warning as the command line shows it: `warning: ...`, not a file, line and source."""
    print(f"warning: {message}", file=file or sys.stderr)


def run(main: Callable[[list[str] | None], Any], argv: list[str] | None = None) -> None:
    """Run a command's main; user errors print one line and exit 2 (Ctrl-C exits 130), warnings one line."""
    try:
        with warnings.catch_warnings():  # restores the warning machinery afterwards (tests call run too)
            warnings.showwarning = one_line_warning
            main(argv)
    except MinifreezeError as err:
        print(f"error: {err}", file=sys.stderr)
        sys.exit(2)
    except Stopped as stop:
        print(stop, file=sys.stderr)
        sys.exit(128 + stop.signum)
    except KeyboardInterrupt:
        print("interrupted", file=sys.stderr)
        sys.exit(130)
