"""The ``geoloc`` command.

Each subcommand lives in the module that implements it: the module defines
``add_arguments(parser)`` and ``main(args) -> int``. Exit status: 0 done, 1 the work failed
while running (an error class with ``exit_status = 1``, e.g. a notebook that raised), 2 a usage
error (bad flag, unknown profile, bad ``--set``, missing input). The table below is the
only place that knows every command; a module is imported only when its
command runs, so ``geoloc --help`` stays fast (no torch import).
"""

from __future__ import annotations

import argparse
import importlib
import sys
from collections.abc import Sequence

from geoloc_lib.core.errors import GeolocError

# (command words) -> (module, one-line help)
COMMANDS: dict[tuple[str, ...], tuple[str, str]] = {
    ("run",): (
        "geoloc_lib.pipeline.runner",
        "execute the numbered notebooks with papermill for a profile",
    ),
    ("notebooks", "record"): (
        "geoloc_lib.pipeline.record",
        "re-execute notebooks/ in place at the smoke profile (refreshes nbval's reference outputs)",
    ),
    ("data", "verify"): (
        "geoloc_lib.data.verify",
        "check a dataset on disk against data_manifest.yaml",
    ),
    ("data", "generate"): (
        "geoloc_lib.data.geosynth.cli",
        "generate the embedded GeoSynth benchmark",
    ),
    ("data", "weather"): (
        "geoloc_lib.weather.sets",
        "materialise weathered drone query sets on disk",
    ),
    ("evaluate",): (
        "geoloc_lib.pipeline.evaluate",
        "evaluate a run or checkpoint on a dataset: notebook 02's tables (CSV + Markdown)",
    ),
    ("features",): (
        "geoloc_lib.pipeline.features",
        "a run's features of a University160k-WX test set, the file geoloc submit reads",
    ),
    ("submit",): (
        "geoloc_lib.eval.submit",
        "write a University160k-WX answer.zip from features",
    ),
    ("bench", "eval"): (
        "geoloc_lib.bench.eval",
        "benchmark the retrieval evaluator against the bare matrix product",
    ),
    ("bench", "train"): (
        "geoloc_lib.bench.train",
        "benchmark training throughput per model, fp32 vs bf16 autocast",
    ),
    ("bench", "fit"): (
        "geoloc_lib.bench.fit",
        "benchmark end-to-end training (real fit runs: data, weather, validation) and levers",
    ),
    ("bench", "data"): (
        "geoloc_lib.bench.data",
        "write a University160k-WX-sized image slice; time decoding, the loader, the projected eval",
    ),
    ("bench", "gpu"): (
        "geoloc_lib.bench.gpu",
        "GPU numbers of the paper configurations (inference, training, evaluation) in one run",
    ),
    ("bench", "weather"): (
        "geoloc_lib.bench.weather",
        "benchmark the weather synthesis (images/s per condition)",
    ),
}


def _groups() -> dict[str, list[tuple[str, ...]]]:
    groups: dict[str, list[tuple[str, ...]]] = {}
    for words in COMMANDS:
        groups.setdefault(words[0], []).append(words)
    return groups


def _usage() -> str:
    lines = ["usage: geoloc COMMAND [ARGS...]", "", "commands:"]
    for words, (_, text) in COMMANDS.items():
        lines.append(f"  {' '.join(words):<18} {text}")
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
    module_name, text = COMMANDS[words]
    module = importlib.import_module(module_name)
    parser = argparse.ArgumentParser(prog="geoloc " + " ".join(words), description=text)
    module.add_arguments(parser)
    args = parser.parse_args(rest)
    try:
        return int(module.main(args) or 0)
    except GeolocError as err:
        # Library errors already say what is wrong and what to do: no traceback.
        print(f"geoloc {' '.join(words)}: error: {err}", file=sys.stderr)
        return int(getattr(err, "exit_status", USAGE_ERROR))


if __name__ == "__main__":
    raise SystemExit(main())
