"""Command-line plumbing: one frozen dataclass per command generates its argparse CLI.

Each field's `help` metadata becomes the flag's help text (defaults shown), `--config FILE.toml` supplies
any option (flags given on the command line win), and `main()` wrappers turn a MinifreezeError into the
one-line message users should see, never a traceback.
"""

from __future__ import annotations

import argparse
import dataclasses
import difflib
import os
import sys
import tomllib
import types
import typing
import warnings
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any, TypeVar

from .errors import MinifreezeError

T = TypeVar("T")
CONFIGS = Path(__file__).resolve().parent / "configs"  # the recipes `--config NAME` finds (package data)


def option(
    default: Any,
    help: str,
    choices: tuple | None = None,
    positional: bool = False,
    aliases: tuple = (),
    or_auto: bool = False,
) -> Any:
    """A dataclass field that knows its command-line help, and other spellings of its flag (`aliases`,
    such as transformers' Trainer's): a flag string means exactly the same, a (flag, convert) pair
    takes a value that `convert` turns into this option's."""
    meta = {
        "help": help,
        "choices": choices,
        "positional": positional,
        "aliases": aliases,
        "or_auto": or_auto,
    }
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


class HelpFormatter(argparse.ArgumentDefaultsHelpFormatter):
    """Shows each default once: a help text that already says its default gets no second one."""

    def _get_help_string(self, action: argparse.Action) -> str:
        text = action.help or ""
        return text if "default" in text.lower() else super()._get_help_string(action)


class Parser(argparse.ArgumentParser):
    """An unknown flag gets one line naming the closest known one, not the whole usage."""

    def parse_args(self, args=None, namespace=None):
        parsed, extra = self.parse_known_args(args, namespace)
        unknown = [a for a in extra if a.startswith("-")]
        if unknown:
            flag = unknown[0].split("=")[0]
            known = [s for a in self._actions for s in a.option_strings if s.startswith("--")]
            close = difflib.get_close_matches(flag, known, n=1, cutoff=0.6)
            hint = f"did you mean {close[0]}?" if close else f"see {self.prog} --help"
            raise MinifreezeError(f"unknown option {flag}: {hint}")
        if extra:
            self.error(f"unrecognized arguments: {' '.join(extra)}")
        return parsed


def build_parser(cls: type, prog: str, description: str) -> argparse.ArgumentParser:
    parser = Parser(prog=prog, description=description, formatter_class=HelpFormatter)
    shipped = "or a config shipped in minifreeze/configs/ by its name (e.g. bitfit_sst2)"
    parser.add_argument(
        "--config", metavar="FILE.toml", help=f"read options from a TOML file, {shipped}; flags override it"
    )
    for f in dataclasses.fields(cls):
        kind, is_list = base_type(f.type)
        meta = f.metadata
        default = f.default_factory() if f.default is dataclasses.MISSING else f.default
        if meta.get("positional"):
            parser.add_argument(f.name, nargs="*", default=default, help=meta["help"])
        elif kind is bool and meta.get("or_auto"):  # --X, --X auto, --X on|off, --no-X
            flag = "--" + f.name.replace("_", "-")
            parser.add_argument(
                flag, dest=f.name, nargs="?", const=True, type=on_off_auto, default=default, help=meta["help"]
            )
            parser.add_argument(
                "--no-" + flag[2:], dest=f.name, action="store_const", const=False, help=argparse.SUPPRESS
            )
        elif kind is bool:
            parser.add_argument(
                "--" + f.name.replace("_", "-"),
                *same_flags(meta),
                dest=f.name,
                action=argparse.BooleanOptionalAction,
                default=default,
                help=meta["help"],
            )
        else:
            parser.add_argument(
                "--" + f.name.replace("_", "-"),
                *same_flags(meta),
                dest=f.name,
                type=kind,
                nargs="+" if is_list else None,
                default=default,
                choices=meta.get("choices"),
                help=meta["help"],
            )
        for alias, convert in [a for a in meta.get("aliases", ()) if isinstance(a, tuple)]:
            parser.add_argument(
                alias, dest=f.name, type=convert, default=argparse.SUPPRESS, help=argparse.SUPPRESS
            )
    if {"batch_size", "grad_accum"} <= {f.name for f in dataclasses.fields(cls)}:
        add_trainer_batch_flags(parser)
    return parser


def on_off_auto(text: str) -> bool | str:
    """The value of an on/off option that also takes "auto" (the run decides; see its help)."""
    value = {"auto": "auto", "on": True, "true": True, "yes": True, "off": False, "false": False, "no": False}
    if text.lower() not in value:
        raise argparse.ArgumentTypeError(f"{text!r}: use auto, on or off")
    return value[text.lower()]


def same_flags(meta: Mapping) -> list[str]:
    return [a for a in meta.get("aliases", ()) if isinstance(a, str)]


def add_trainer_batch_flags(parser: argparse.ArgumentParser) -> None:
    """Trainer's batch flags, which count differently from ours: --batch-size is what one optimizer step
    sees, cut into --grad-accum micro-batches; Trainer's batch is per device and its accumulation
    multiplies it. `trainer_batch` turns them into ours once parsing is done."""
    parser.add_argument(
        "--per-device-train-batch-size",
        type=int,
        metavar="B",
        default=argparse.SUPPRESS,
        help="Trainer's spelling: B examples per forward pass on each device; sets --batch-size to "
        "B x G x world size ($WORLD_SIZE under torchrun) and --grad-accum to G x world size",
    )
    parser.add_argument(
        "--gradient-accumulation-steps",
        type=int,
        metavar="G",
        default=argparse.SUPPRESS,
        help="Trainer's spelling (with --per-device-train-batch-size; default 1): G forward passes per "
        "device per optimizer step, so a step sees B x G x world size examples. Unlike --grad-accum it "
        "multiplies the batch instead of dividing it",
    )


def trainer_batch(args: argparse.Namespace, typed: set[str]) -> None:
    """Replace Trainer's batch flags in `args` by --batch-size and --grad-accum (see add_trainer_batch_flags)."""
    per_device = vars(args).pop("per_device_train_batch_size", None)
    steps = vars(args).pop("gradient_accumulation_steps", None)
    if per_device is None and steps is None:
        return
    if per_device is None:
        raise MinifreezeError(
            "--gradient-accumulation-steps needs --per-device-train-batch-size (Trainer's meaning); "
            "or split --batch-size into micro-batches with --grad-accum"
        )
    mixed = sorted({"batch_size", "grad_accum"} & typed)
    if mixed:
        raise MinifreezeError(
            f"--per-device-train-batch-size and --{mixed[0].replace('_', '-')} both set the batch: pick one"
        )
    for name, value in (
        ("--per-device-train-batch-size", per_device),
        ("--gradient-accumulation-steps", steps),
    ):
        if value is not None and value < 1:
            raise MinifreezeError(f"{name} {value}: must be at least 1")
    world = int(os.environ.get("WORLD_SIZE", "1"))
    args.grad_accum = (steps or 1) * world
    args.batch_size = per_device * args.grad_accum


def parse(cls: type[T], argv: list[str] | None, prog: str, description: str) -> T:
    """Dataclass instance from TOML file (optional) + command line; unknown TOML keys are an error."""
    parser = build_parser(cls, prog, description)
    args = parser.parse_args(argv)
    given = set(vars(given_only(cls, prog, description, argv)))  # refuses Trainer's and our batch mixed
    trainer_batch(args, typed=set())
    values = {f.name: getattr(args, f.name) for f in dataclasses.fields(cls)}
    if args.config:
        path = config_file(args.config)
        try:
            file_values = tomllib.loads(path.read_text(encoding="utf-8"))
        except OSError as err:
            raise MinifreezeError(f"--config {path}: cannot read it ({err.strerror or err})") from None
        except UnicodeDecodeError:
            raise MinifreezeError(f"--config {path}: not UTF-8 text; re-save it as UTF-8") from None
        except tomllib.TOMLDecodeError as err:
            raise MinifreezeError(f"--config {path}: not valid TOML ({err})") from None
        file_values = {k.replace("-", "_"): v for k, v in file_values.items()}
        unknown = sorted(set(file_values) - set(values))
        if unknown:
            raise MinifreezeError(f"--config {path}: unknown option(s) {', '.join(unknown)}; see --help")
        for f in dataclasses.fields(cls):
            if f.name in file_values and f.name not in given:
                values[f.name] = coerce(file_values[f.name], f, path)
    return cls(**values)


def config_file(text: str) -> Path:
    """`--config` as a path, else as the name of a config shipped with the package (`bitfit_sst2`, with or
    without `.toml`), so that an installed minifreeze has its recipes too."""
    path = Path(text).expanduser()
    if path.is_file():
        return path
    shipped = CONFIGS / path.with_suffix(".toml").name
    if path.parent == Path(".") and shipped.is_file():
        return shipped
    names = ", ".join(sorted(p.stem for p in CONFIGS.glob("*.toml")))
    raise MinifreezeError(f"--config {text}: no such file, nor a shipped config (shipped: {names})")


def given_only(cls: type, prog: str, description: str, argv: list[str] | None) -> argparse.Namespace:
    """The options the user actually typed (a parser whose defaults are all suppressed)."""
    parser = build_parser(cls, prog, description)
    for action in parser._actions:
        action.default = argparse.SUPPRESS
    args = parser.parse_args(argv)
    if "per_device_train_batch_size" in args:
        trainer_batch(args, typed=set(vars(args)))
    return args


def coerce(value: Any, f: dataclasses.Field, path: Path) -> Any:
    kind, is_list = base_type(f.type)
    if f.metadata.get("or_auto") and isinstance(value, str):
        try:
            return on_off_auto(value)
        except argparse.ArgumentTypeError as err:
            raise MinifreezeError(f"--config {path}: option {f.name} = {err}") from None
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
