"""Every ``geoloc`` command's arguments, in a module that imports no torch.

``geoloc COMMAND --help`` builds the command's parser from the function here and exits before
the module that implements the command (and torch with it) is imported, so help answers at
once. Conventions every command follows:

- each help shows its default, written out by :class:`HelpFormatter` (``(default: ...)``) unless
  the help text already says what happens without the flag;
- a flag that takes a list takes it as separate words, ``--models mcgf geoviewmatch``; the
  comma form ``--models mcgf,geoviewmatch`` is accepted too (:class:`ListAction`);
- the names a command accepts (profiles, manifest entries, conditions) are listed in its help.

Values that live in modules importing torch are repeated in :data:`MIRRORED` (the weather
conditions, the University160k-WX sizes, ...); ``tests/test_cli.py`` checks each copy against
its source.
"""

from __future__ import annotations

import argparse
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

# Copies of values defined in modules that import torch (source in the comment).
CONDITIONS = (  # geoloc_lib.weather.synth.CONDITIONS
    "normal",
    "fog",
    "rain",
    "snow",
    "dark",
    "light",
    "fog_rain",
    "fog_snow",
    "rain_snow",
    "wind",
)
MIXED = "mixed"  # geoloc_lib.weather.sets.MIXED
WEATHER_REFERENCE_SIZE = 512  # geoloc_lib.weather.sets.WEATHER_REFERENCE_SIZE
DEFAULT_CHUNK_MB = 512.0  # geoloc_lib.eval.ranking.DEFAULT_CHUNK_MB
CHALLENGE_TOPK = 10  # geoloc_lib.eval.submit.CHALLENGE_TOPK
U160K_QUERIES, U160K_GALLERY, U160K_DIM = 37_855, 168_437, 512  # geoloc_lib.bench.eval
EVAL_SIZE = 448  # geoloc_lib.bench.data.EVAL_SIZE
TRAINABLE_MODELS = (  # geoloc_lib.training.runs.TASKS (keys)
    "mcgf",
    "mcgf_matching_only",
    "geoviewmatch",
    "infonce_baseline",
)
FIT_MODELS = TRAINABLE_MODELS  # geoloc_lib.bench.fit.DEFAULT_MODELS
GPU_SECTIONS = ("inference", "train", "mcgf", "eval", "compile")  # geoloc_lib.bench.gpu.SECTIONS
# geoloc_lib.data.geosynth.profiles.PROFILES less "tiny" (the unit tests' own)
GEOSYNTH_PROFILES = ("smoke", "default", "default_capture_gap")
EVALUATE_DATASETS = ("university1652", "cvusa", "cvact")  # geoloc_lib.pipeline.evaluate.DATASETS
DRONE_TASKS = ("drone->satellite", "satellite->drone")  # geoloc_lib.pipeline.evaluate

# name here -> "module:attribute" it copies (tests/test_cli.py compares them).
MIRRORED = {
    "CONDITIONS": "geoloc_lib.weather.synth:CONDITIONS",
    "MIXED": "geoloc_lib.weather.sets:MIXED",
    "WEATHER_REFERENCE_SIZE": "geoloc_lib.weather.sets:WEATHER_REFERENCE_SIZE",
    "DEFAULT_CHUNK_MB": "geoloc_lib.eval.ranking:DEFAULT_CHUNK_MB",
    "CHALLENGE_TOPK": "geoloc_lib.eval.submit:CHALLENGE_TOPK",
    "U160K_QUERIES": "geoloc_lib.bench.eval:U160K_QUERIES",
    "U160K_GALLERY": "geoloc_lib.bench.eval:U160K_GALLERY",
    "U160K_DIM": "geoloc_lib.bench.eval:U160K_DIM",
    "EVAL_SIZE": "geoloc_lib.bench.data:EVAL_SIZE",
    "FIT_MODELS": "geoloc_lib.bench.fit:DEFAULT_MODELS",
    "GPU_SECTIONS": "geoloc_lib.bench.gpu:SECTIONS",
    "EVALUATE_DATASETS": "geoloc_lib.pipeline.evaluate:DATASETS",
    "DRONE_TASKS": "geoloc_lib.pipeline.evaluate:DRONE_TASKS",
}


class HelpFormatter(argparse.RawDescriptionHelpFormatter):
    """Help with each option's default appended, and the epilog's lines kept as written.

    ``(default: X)`` is added to every option that has help, unless the help already mentions
    its default, the option is required, or the default is ``None``/``False`` (a flag that is
    off, or a value the help explains). Lists are shown as the words one would type.
    """

    def _get_help_string(self, action: argparse.Action) -> str:
        text = action.help or ""
        default = action.default
        if (
            "default" in text
            or action.required
            or default is None
            or default is False
            or default is argparse.SUPPRESS
            or not action.option_strings
        ):
            return text
        if isinstance(default, (list, tuple)):
            shown = " ".join(str(v) for v in default)
        else:
            shown = str(default)
        return f"{text} (default: {shown.replace('%', '%%')})"


class ListAction(argparse.Action):
    """A list flag: ``--flag A B`` and ``--flag A,B`` (or both mixed) give ``[A, B]``.

    ``item`` converts each value (e.g. ``int``); ``valid`` restricts the values (checked after
    splitting on commas, so argparse's own ``choices`` is not used). Repeating the flag replaces
    the earlier list, like any other option.
    """

    def __init__(
        self,
        option_strings: Sequence[str],
        dest: str,
        item: Callable[[str], Any] = str,
        valid: Sequence[str] | None = None,
        **kwargs: Any,
    ) -> None:
        kwargs.setdefault("nargs", "+")
        self.item = item
        self.valid = tuple(valid) if valid is not None else None
        super().__init__(option_strings, dest, **kwargs)

    def __call__(
        self,
        parser: argparse.ArgumentParser,
        namespace: argparse.Namespace,
        values: Any,
        option_string: str | None = None,
    ) -> None:
        words = [values] if isinstance(values, str) else list(values)
        parts = [p.strip() for word in words for p in str(word).split(",") if p.strip()]
        if self.valid is not None:
            unknown = [p for p in parts if p not in self.valid]
            if unknown:
                raise argparse.ArgumentError(
                    self,
                    f"invalid choice: {', '.join(map(repr, unknown))} "
                    f"(choose from {', '.join(map(repr, self.valid))})",
                )
        try:
            converted = [self.item(p) for p in parts]
        except ValueError:
            kind = getattr(self.item, "__name__", "value")
            raise argparse.ArgumentError(self, f"expected {kind} values, got {words}") from None
        setattr(namespace, self.dest, converted)


def _listing(title: str, rows: dict[str, str]) -> str:
    width = max((len(name) for name in rows), default=0)
    lines = [f"{title}:"]
    lines += [f"  {name:<{width}}  {text}" for name, text in rows.items()]
    return "\n".join(lines)


def profile_listing() -> str:
    """Every profile of ``configs/profiles.yaml`` with its description (``geoloc run --help``)."""
    from geoloc_lib.pipeline.profiles import load_profiles

    try:
        profiles = load_profiles()
    except Exception as err:  # help must answer even when the file is broken
        return f"profiles: configs/profiles.yaml could not be read ({err})"
    rows = {
        name: " ".join(str((entry or {}).get("description", "")).split())
        for name, entry in profiles.items()
    }
    return _listing("profiles (configs/profiles.yaml)", rows)


def dataset_listing() -> str:
    """Every entry of ``data_manifest.yaml`` with its title (``geoloc data verify --help``)."""
    import yaml

    from geoloc_lib.core.paths import MANIFEST_FILE

    try:
        with open(MANIFEST_FILE, encoding="utf-8") as fh:
            manifest = yaml.safe_load(fh)
        rows = {
            name: " ".join(str((entry or {}).get("title", "")).split())
            for name, entry in manifest.items()
        }
    except Exception as err:  # help must answer even when the file is broken
        return f"datasets: {Path(MANIFEST_FILE).name} could not be read ({err})"
    return _listing(f"datasets ({Path(MANIFEST_FILE).name})", rows)


def _only(parser: argparse.ArgumentParser, what: str) -> None:
    parser.add_argument(
        "--only",
        action=ListAction,
        default=None,
        metavar="NOTEBOOK",
        help=f"notebooks to {what}, by number or name, e.g. --only 00 02 (or 00,02) "
        "(default: all of them)",
    )


def run(parser: argparse.ArgumentParser) -> None:
    """``geoloc run``."""
    parser.add_argument(
        "--profile", required=True, help="a profile of configs/profiles.yaml (listed below)"
    )
    _only(parser, "run (among the profile's)")
    parser.add_argument(
        "--set",
        dest="overrides",
        action="append",
        default=[],
        metavar="[NN.]KEY=VALUE",
        help="override a parameter (all notebooks that have it, or one with NN.); repeatable "
        "(default: none)",
    )
    parser.add_argument("--dry-run", action="store_true", help="resolve and check; execute nothing")
    parser.add_argument(
        "--out",
        default=None,
        help="folder for executed notebooks (default: the profile's reports_dir/executed)",
    )
    parser.add_argument("--no-progress", action="store_true", help="no per-cell progress bar")
    parser.add_argument(
        "--force",
        action="store_true",
        help="write into existing folders geoloc did not create (reports_dir, runs_dir, --out); "
        "they get a .geoloc marker file",
    )
    parser.epilog = profile_listing()


def notebooks_record(parser: argparse.ArgumentParser) -> None:
    """``geoloc notebooks record``."""
    _only(parser, "re-record")


def data_verify(parser: argparse.ArgumentParser) -> None:
    """``geoloc data verify``."""
    parser.add_argument("name", help="manifest entry (listed below)")
    parser.add_argument("--root", required=True, help="folder holding the dataset")
    parser.add_argument(
        "--manifest", default=None, help="manifest file (default: the repository's)"
    )
    parser.add_argument(
        "--full",
        action="store_true",
        help="decode every image (slow; default: parse each header and check the file's end)",
    )
    parser.epilog = dataset_listing()


def data_generate(parser: argparse.ArgumentParser) -> None:
    """``geoloc data generate``."""
    parser.add_argument("dataset", help="dataset to generate: geosynth (the only one)")
    parser.add_argument(
        "--profile",
        default="smoke",
        help="smoke (CI, seconds), default (the benchmark) or default_capture_gap (the benchmark "
        "with each drone orbit under its own season, sun and colour balance)",
    )
    parser.add_argument("--seed", type=int, default=0, help="random seed (same seed, same files)")
    parser.add_argument(
        "--out",
        required=True,
        help="output folder (files a GeoSynth run wrote there before are replaced; others kept)",
    )
    parser.add_argument(
        "--workers", type=int, default=None, help="parallel processes (default: up to 2)"
    )
    parser.add_argument("--quiet", action="store_true", help="no progress bar")


def data_weather(parser: argparse.ArgumentParser) -> None:
    """``geoloc data weather``."""
    parser.add_argument("--root", required=True, help="University-1652-layout dataset root")
    parser.add_argument(
        "--out",
        required=True,
        help="output folder: new or empty, or one geoloc wrote (it has a .geoloc marker file)",
    )
    parser.add_argument(
        "--force",
        action="store_true",
        help="write into an --out folder geoloc did not create (it gets a .geoloc marker file; "
        "an existing weather set there is still never replaced)",
    )
    parser.add_argument(
        "--condition",
        default=MIXED,
        help=f"one of {', '.join(CONDITIONS)}; or {MIXED} (random per query) or all",
    )
    parser.add_argument("--seed", type=int, default=0, help="weather seed")
    parser.add_argument("--query-folder", default="query_drone", help="folder under test/")
    parser.add_argument(
        "--size", type=int, default=None, help="resize to SIZE x SIZE first (default: no resize)"
    )
    parser.add_argument("--batch-size", type=int, default=16, help="images per batch")
    parser.add_argument("--quality", type=int, default=95, help="JPEG quality")
    parser.add_argument(
        "--reference-size",
        type=int,
        default=WEATHER_REFERENCE_SIZE,
        help="draw particles as at this image size (evaluation's)",
    )
    parser.add_argument("--no-progress", action="store_true", help="hide the progress bar")


def evaluate(parser: argparse.ArgumentParser) -> None:
    """``geoloc evaluate``."""
    parser.add_argument("run", type=Path, help="run folder (runs_dir/<name>) or checkpoint file")
    parser.add_argument(
        "--dataset",
        required=True,
        choices=EVALUATE_DATASETS,
        help="university1652 for drone->satellite models; cvusa or cvact for street models",
    )
    parser.add_argument("--root", required=True, type=Path, help="the dataset's folder")
    parser.add_argument(
        "--conditions",
        action=ListAction,
        valid=(*CONDITIONS, MIXED),
        default=None,
        metavar="COND",
        help="weather conditions of the drone images, e.g. --conditions normal fog mixed "
        f"(default: all: {' '.join((*CONDITIONS, MIXED))})",
    )
    parser.add_argument(
        "--tasks",
        action=ListAction,
        valid=DRONE_TASKS,
        default=["drone->satellite"],
        metavar="TASK",
        help="University-1652 tasks, e.g. --tasks drone->satellite satellite->drone",
    )
    parser.add_argument(
        "--max-queries",
        type=int,
        default=None,
        help="drone queries per condition, a seeded subset (default: all)",
    )
    parser.add_argument("--device", default="auto", help="auto, cpu, cuda, cuda:1")
    parser.add_argument(
        "--out",
        type=Path,
        default=None,
        help="folder for the tables (default: evaluation/<run name> in the current folder)",
    )
    parser.add_argument("--quiet", action="store_true", help="no progress bars")


def features(parser: argparse.ArgumentParser) -> None:
    """``geoloc features``."""
    parser.add_argument("run", type=Path, help="run folder (runs_dir/<name>) or checkpoint file")
    parser.add_argument(
        "--root",
        required=True,
        type=Path,
        help="University160k-WX test folder: query_drone_160k_wx_24/, gallery_satellite_160k/, "
        "query_drone_name.txt",
    )
    parser.add_argument(
        "--out", type=Path, default=Path("features.pt"), help="feature file to write, .pt or .npz"
    )
    parser.add_argument(
        "--force", action="store_true", help="replace --out even if it is not a feature file"
    )
    parser.add_argument("--batch-size", type=int, default=64, help="images per batch")
    parser.add_argument("--device", default="auto", help="auto, cpu, cuda, cuda:1")
    parser.add_argument("--quiet", action="store_true", help="no progress bars")


def _chunks(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--chunk-size",
        type=int,
        default=None,
        help="queries per chunk (default: as many as --max-chunk-mb allows)",
    )
    parser.add_argument(
        "--max-chunk-mb",
        type=float,
        default=DEFAULT_CHUNK_MB,
        help="memory budget of one chunk's score matrix, MiB",
    )


def submit(parser: argparse.ArgumentParser) -> None:
    """``geoloc submit``."""
    parser.add_argument("--features", required=True, type=Path, help=".pt or .npz feature file")
    parser.add_argument(
        "--query-list", required=True, type=Path, help="query_drone_name.txt (the line order)"
    )
    parser.add_argument("--out", default=Path("answer.zip"), type=Path, help="zip to write")
    parser.add_argument("--topk", type=int, default=CHALLENGE_TOPK, help="names per line")
    _chunks(parser)
    parser.add_argument("--device", default=None, help="cpu, cuda, cuda:1 (default: cpu)")
    parser.add_argument(
        "--normalize", action="store_true", help="L2-normalise features (else they must be)"
    )
    parser.add_argument("--quiet", action="store_true", help="no progress bar")
    parser.add_argument(
        "--force", action="store_true", help="replace --out even if it is not an answer archive"
    )


def bench_eval(parser: argparse.ArgumentParser) -> None:
    """``geoloc bench eval``."""
    parser.add_argument(
        "--queries",
        type=int,
        default=None,
        help=f"queries (default: {U160K_QUERIES}, University160k-WX's; 2000 with --quick)",
    )
    parser.add_argument(
        "--gallery",
        type=int,
        default=None,
        help=f"gallery size (default: {U160K_GALLERY}; 20000 with --quick)",
    )
    parser.add_argument("--dim", type=int, default=U160K_DIM, help="feature dimension")
    parser.add_argument("--quick", action="store_true", help="2,000 queries x 20,000 gallery")
    _chunks(parser)
    parser.add_argument(
        "--naive-queries", type=int, default=200, help="queries of the naive evaluator's run"
    )
    parser.add_argument("--noise", type=float, default=4.0, help="query noise (sets the recall)")
    parser.add_argument(
        "--matches", type=int, default=1, help="true matches per query (54: satellite->drone)"
    )
    parser.add_argument("--seed", type=int, default=0, help="random seed of the features")
    parser.add_argument("--device", default="cpu", help="torch device")
    parser.add_argument("--faiss", action="store_true", help="also benchmark the faiss backend")
    parser.add_argument("--faiss-spec", default="IVF1024,Flat", help="approximate faiss index")
    parser.add_argument(
        "--nprobe",
        action=ListAction,
        item=int,
        default=[8, 32, 128],
        metavar="N",
        help="IVF lists visited per query, e.g. --nprobe 8 32 128",
    )
    parser.add_argument(
        "--faiss-queries", type=int, default=2000, help="queries of the faiss comparison"
    )
    parser.add_argument("--quiet", action="store_true", help="no progress bars")


def _threads(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--threads", type=int, default=None, help="torch CPU threads (default: torch's)"
    )


def bench_train(parser: argparse.ArgumentParser) -> None:
    """``geoloc bench train``."""
    parser.add_argument(
        "--models",
        action=ListAction,
        default=list(TRAINABLE_MODELS),
        metavar="MODEL",
        help="models to time, e.g. --models mcgf geoviewmatch",
    )
    parser.add_argument("--preset", default="default", help="smoke | default | paper")
    parser.add_argument("--batch-size", type=int, default=16, help="rows per training step")
    parser.add_argument("--steps", type=int, default=5, help="timed steps (after 2 warm-up steps)")
    _threads(parser)


def bench_fit(parser: argparse.ArgumentParser) -> None:
    """``geoloc bench fit``."""
    parser.add_argument("--root", default="data/geosynth", help="GeoSynth root")
    parser.add_argument(
        "--models",
        action=ListAction,
        default=list(FIT_MODELS),
        metavar="MODEL",
        help="models to train, e.g. --models mcgf geoviewmatch",
    )
    parser.add_argument("--preset", default="default", help="smoke | default | paper")
    parser.add_argument("--epochs", type=int, default=3, help="epochs per run (>= 2)")
    parser.add_argument(
        "--lever",
        action="append",
        default=[],
        metavar="KEY=JSON",
        help="an override to compare with the baseline (repeatable), e.g. val_every=5 or "
        "run.val_queries=0 (SECTION.KEY names the overrides section: model, train, run; a bare "
        "key goes to the section that has it) (default: none)",
    )
    _threads(parser)
    parser.add_argument(
        "--parallel-runs",
        type=int,
        default=1,
        help="also train N baseline runs at once, cores // N threads each (their summed images/s)",
    )
    parser.add_argument("--seed", type=int, default=0, help="random seed of the runs")
    parser.add_argument(
        "--csv", default=None, help="also write the table to this CSV file (default: print only)"
    )
    parser.add_argument(
        "--force",
        action="store_true",
        help="replace --csv even if it is not a table this command wrote (its header's columns)",
    )


def bench_data(parser: argparse.ArgumentParser) -> None:
    """``geoloc bench data``."""
    parser.add_argument("--out", required=True, help="folder of the synthetic slice (new or empty)")
    parser.add_argument("--n", type=int, default=2000, help="images per view")
    parser.add_argument("--seed", type=int, default=0, help="random seed of the images")
    parser.add_argument("--gallery-size", type=int, default=1024, help="gallery tile side (WebP)")
    parser.add_argument("--query-size", type=int, default=512, help="drone query side (JPEG)")
    parser.add_argument("--size", type=int, default=EVAL_SIZE, help="resize target side")
    parser.add_argument("--sample", type=int, default=200, help="images per decoder and view")
    parser.add_argument(
        "--loader-workers",
        action=ListAction,
        item=int,
        default=None,
        metavar="N",
        help="num_workers to time, e.g. --loader-workers 0 1 2 (default: 0 1 2 and the core count)",
    )
    parser.add_argument("--loader-images", type=int, default=256, help="images per loader run")
    parser.add_argument("--batch-size", type=int, default=32, help="loader batch size")
    parser.add_argument(
        "--model-img-s",
        type=float,
        default=None,
        help="model embeddings/s for the projection (default: mcgf paper on this CPU, measured)",
    )
    parser.add_argument(
        "--workers",
        type=int,
        default=None,
        help="loader workers of the projection (default: cores)",
    )
    parser.add_argument(
        "--csv", default=None, help="also write the table to this CSV file (default: print only)"
    )
    parser.add_argument(
        "--force",
        action="store_true",
        help="replace --csv even if it is not a table this command wrote (its header's columns)",
    )
    parser.add_argument("--quiet", action="store_true", help="no progress bar")


def bench_gpu(parser: argparse.ArgumentParser) -> None:
    """``geoloc bench gpu``."""
    parser.add_argument(
        "--out", type=Path, default=None, help="writes gpu_bench.json and .md (default: print only)"
    )
    parser.add_argument(
        "--force",
        action="store_true",
        help="write into an --out folder geoloc did not create (it gets a .geoloc marker file)",
    )
    parser.add_argument("--allow-cpu", action="store_true", help="no CUDA: tiny sizes on the CPU")
    parser.add_argument(
        "--budget-s", type=float, default=None, help="seconds in all (default: 390; CPU: 120)"
    )
    parser.add_argument("--preset", default=None, help="model preset (default: paper; CPU: smoke)")
    parser.add_argument(
        "--sections",
        action=ListAction,
        valid=GPU_SECTIONS,
        default=list(GPU_SECTIONS),
        metavar="SECTION",
        help="sections to run, e.g. --sections inference eval",
    )
    parser.add_argument(
        "--infer-batch", type=int, default=None, help="inference batch (default: 16; CPU: 2)"
    )
    parser.add_argument(
        "--repeats", type=int, default=None, help="latency repeats (default: 20; CPU: 2)"
    )
    parser.add_argument(
        "--train-batch", type=int, default=None, help="GeoViewMatch batch (default: recipe's)"
    )
    parser.add_argument(
        "--mcgf-batch", type=int, default=None, help="MCGF batch (default: 16; CPU: 2)"
    )
    parser.add_argument(
        "--steps", type=int, default=None, help="timed train steps, at most (default: 10; CPU: 2)"
    )
    parser.add_argument(
        "--queries",
        type=int,
        default=None,
        help=f"eval queries (default: {U160K_QUERIES}; CPU: 300)",
    )
    parser.add_argument(
        "--gallery",
        type=int,
        default=None,
        help=f"eval gallery (default: {U160K_GALLERY}; CPU: 3000)",
    )
    parser.add_argument(
        "--dim", type=int, default=None, help=f"feature dimension (default: {U160K_DIM}; CPU: 64)"
    )
    parser.add_argument(
        "--naive-queries", type=int, default=None, help="naive subset (default: 100; CPU: 20)"
    )
    parser.add_argument(
        "--compile-backend",
        default=None,
        help="torch.compile backend (default: inductor; CPU: eager)",
    )
    parser.add_argument(
        "--min-compile-s",
        type=float,
        default=None,
        help="start compiling only with this much left (default: 60; CPU: 1)",
    )
    parser.add_argument(
        "--compile-in",
        choices=("subprocess", "process"),
        default=None,
        help="subprocess: a child killed when the budget ends; process: in this one "
        "(default: subprocess on CUDA, process on the CPU)",
    )


def bench_weather(parser: argparse.ArgumentParser) -> None:
    """``geoloc bench weather``."""
    parser.add_argument("--size", type=int, default=256, help="image side")
    parser.add_argument("--batch", type=int, default=32, help="batch size")
    parser.add_argument("--repeats", type=int, default=3, help="timed batches per row")
    parser.add_argument("--device", default="cpu", help="torch device")
    _threads(parser)
    parser.add_argument("--seed", type=int, default=0, help="random seed of the images")
    parser.add_argument("--exact", action="store_true", help="time the unbanked reference path")
    parser.add_argument(
        "--synth-threads",
        type=int,
        default=1,
        help="torch threads inside the synthesis (0 leaves torch's setting)",
    )


def readme(parser: argparse.ArgumentParser) -> None:
    """``geoloc readme``."""
    parser.add_argument(
        "--check",
        action="store_true",
        help="change nothing; exit 1 and print the difference when the block is out of date",
    )
    parser.add_argument(
        "--readme",
        type=Path,
        default=None,
        help="the file holding the results block (default: the repository's README.md)",
    )
    parser.add_argument(
        "--reports",
        type=Path,
        default=None,
        help="reports folder whose tables/ are read (default: the repository's reports/)",
    )
