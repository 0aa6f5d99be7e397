"""The ``geoloc`` command.

Each command is implemented by a module that defines ``main(args) -> int``; its arguments
are defined by a function of :mod:`geoloc_lib.pipeline.arguments`, which imports no torch. The
table below is the only place that knows every command: it names both. The implementing
module is imported only after the arguments parsed, so ``geoloc --help`` and
``geoloc COMMAND --help`` answer without importing torch. Exit status: 0 done, 1 the work
failed while running (an error class with ``exit_status = 1``, e.g. a notebook that raised),
2 a usage error (bad flag, unknown profile, bad ``--set``, missing input).
"""

from __future__ import annotations

import argparse
import importlib
import sys
from collections.abc import Callable, Sequence
from typing import NamedTuple

import geoloc_lib
from geoloc_lib.core.errors import GeolocError
from geoloc_lib.pipeline import arguments as A


class Command(NamedTuple):
    module: str  # defines main(args) -> int
    help: str  # one line, shown by `geoloc --help` and as the command's description
    arguments: Callable[[argparse.ArgumentParser], None]  # adds the command's arguments


# (command words) -> the command
COMMANDS: dict[tuple[str, ...], Command] = {
    ("run",): Command(
        "geoloc_lib.pipeline.runner",
        "execute the numbered notebooks with papermill for a profile",
        A.run,
    ),
    ("notebooks", "record"): Command(
        "geoloc_lib.pipeline.record",
        "re-execute notebooks/ in place at the smoke profile (refreshes nbval's reference outputs)",
        A.notebooks_record,
    ),
    ("readme",): Command(
        "geoloc_lib.pipeline.readme",
        "rewrite README.md's results block from reports/tables (--check: compare only)",
        A.readme,
    ),
    ("data", "verify"): Command(
        "geoloc_lib.data.verify",
        "check a dataset on disk against data_manifest.yaml",
        A.data_verify,
    ),
    ("data", "generate"): Command(
        "geoloc_lib.data.geosynth.cli",
        "generate the embedded GeoSynth benchmark",
        A.data_generate,
    ),
    ("data", "weather"): Command(
        "geoloc_lib.weather.sets",
        "materialise weathered drone query sets on disk",
        A.data_weather,
    ),
    ("evaluate",): Command(
        "geoloc_lib.pipeline.evaluate",
        "evaluate a run or checkpoint on a dataset: notebook 02's tables (CSV + Markdown)",
        A.evaluate,
    ),
    ("features",): Command(
        "geoloc_lib.pipeline.features",
        "a run's features of a University160k-WX test set, the file geoloc submit reads",
        A.features,
    ),
    ("submit",): Command(
        "geoloc_lib.eval.submit",
        "write a University160k-WX answer.zip from features",
        A.submit,
    ),
    ("bench", "eval"): Command(
        "geoloc_lib.bench.eval",
        "benchmark the retrieval evaluator against the bare matrix product",
        A.bench_eval,
    ),
    ("bench", "train"): Command(
        "geoloc_lib.bench.train",
        "benchmark training throughput per model, fp32 vs bf16 autocast",
        A.bench_train,
    ),
    ("bench", "fit"): Command(
        "geoloc_lib.bench.fit",
        "benchmark end-to-end training (real fit runs: data, weather, validation) and levers",
        A.bench_fit,
    ),
    ("bench", "data"): Command(
        "geoloc_lib.bench.data",
        "write a University160k-WX-sized image slice; time decoding, the loader, the projected eval",
        A.bench_data,
    ),
    ("bench", "gpu"): Command(
        "geoloc_lib.bench.gpu",
        "GPU numbers of the paper configurations (inference, training, evaluation) in one run",
        A.bench_gpu,
    ),
    ("bench", "weather"): Command(
        "geoloc_lib.bench.weather",
        "benchmark the weather synthesis (images/s per condition)",
        A.bench_weather,
    ),
}


def _groups() -> dict[str, list[tuple[str, ...]]]:
    groups: dict[str, list[tuple[str, ...]]] = {}
    for words in COMMANDS:
        groups.setdefault(words[0], []).append(words)
    return groups


def _usage() -> str:
    lines = ["usage: geoloc [--version] COMMAND [ARGS...]", "", "commands:"]
    for words, command in COMMANDS.items():
        lines.append(f"  {' '.join(words):<18} {command.help}")
    lines.append("")
    lines.append("Run 'geoloc COMMAND --help' for a command's arguments.")
    return "\n".join(lines)


USAGE_ERROR = 2  # exit status of every user error (argparse's own)
RUNTIME_FAILURE = 1  # exit status of work that started and failed (an error's ``exit_status``)


def _user_error(message: str) -> SystemExit:
    print(message, file=sys.stderr)
    return SystemExit(USAGE_ERROR)


def _resolve(argv: Sequence[str]) -> tuple[tuple[str, ...], list[str]]:
    groups = _groups()
    if not argv:
        print(_usage(), file=sys.stderr)
        raise SystemExit(USAGE_ERROR)
    if argv[0] in ("-h", "--help"):
        print(_usage())
        raise SystemExit(0)
    if argv[0] in ("-V", "--version"):
        print(f"geoloc {geoloc_lib.__version__}")
        raise SystemExit(0)
    head = argv[0]
    if head not in groups:
        valid = ", ".join(sorted(groups))
        raise _user_error(f"geoloc: unknown command {head!r}; valid commands: {valid}")
    candidates = groups[head]
    if (head,) in COMMANDS:
        return (head,), list(argv[1:])
    if len(argv) < 2 or argv[1] in ("-h", "--help"):
        subs = ", ".join(w[1] for w in candidates)
        usage = f"usage: geoloc {head} {{{subs}}} [ARGS...]"
        if len(argv) >= 2:
            print(usage)
            raise SystemExit(0)
        raise _user_error(usage)
    words = (head, argv[1])
    if words not in COMMANDS:
        subs = ", ".join(w[1] for w in candidates)
        raise _user_error(f"geoloc {head}: unknown subcommand {argv[1]!r}; valid: {subs}")
    return words, list(argv[2:])


def main(argv: Sequence[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    words, rest = _resolve(argv)
    command = COMMANDS[words]
    parser = argparse.ArgumentParser(
        prog="geoloc " + " ".join(words), description=command.help, formatter_class=A.HelpFormatter
    )
    command.arguments(parser)
    args = parser.parse_args(rest)  # --help and usage errors exit here, before the import
    module = importlib.import_module(command.module)
    try:
        return int(module.main(args) or 0)
    except GeolocError as err:
        # Library errors already say what is wrong and what to do: no traceback.
        print(f"geoloc {' '.join(words)}: error: {err}", file=sys.stderr)
        return int(getattr(err, "exit_status", USAGE_ERROR))


if __name__ == "__main__":
    raise SystemExit(main())
