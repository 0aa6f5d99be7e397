"""``geoloc bench gpu``: the GPU numbers of the paper configurations, in one prepared run.

Made to be run once on a lent GPU (``scripts/gpu_check.sh``) within a few minutes; random weights
(``pretrained=False``), random inputs. Sections, in the order they run:

1. ``inference``: GeoViewMatch (paper preset) embedding a batch of ground 128x640 + aerial
   256x256 pairs (:func:`geoloc_lib.analysis.cost.model_cost` with ``pair_forward``): GFLOPs
   per pair (torch's counter, 2 FLOPs per multiply-add), peak CUDA memory of the timed calls
   (``max_memory_allocated`` after a reset; weights and inputs included) and the median latency
   per batch, fp32 and bf16 autocast, beside Table 4 of the GeoViewMatch paper (RTX 4090).
2. ``train_geoviewmatch``: training images/s of GeoViewMatch at its recipe's batch size, full
   steps (:func:`geoloc_lib.bench.train.train_step`: batch augmentation, forward, backward,
   AdamW, ASAM's second forward + backward), fp32 and bf16 autocast.
3. ``train_mcgf``: the same for MCGF (Swin-T + EVA-02 at 448x448, SGD, the weather synthesised
   on the device each step as ``train_mcgf`` does) at batch 16, halved
   on out-of-memory (the batch used is recorded), bf16 autocast and fp32.
4. ``eval``: University160k-WX scale retrieval (37,855 x 168,437 x 512-d synthetic features)
   through ``evaluate_university1652`` on the GPU, against the bare chunked matrix product
   (timed before and after), and the naive per-query evaluator's agreement on a subset.
5. ``train_geoviewmatch.bf16_compile``: bf16 + ``torch.compile`` of ``training_losses``;
   the first step (compilation) is timed apart. It runs last: compilation cannot be stopped
   once started, so it only starts when enough of the budget is left, and an error is recorded
   as a string.

Training "images/s" are batch rows per second, as in ``geoloc bench train``: a GeoViewMatch row is
one ground + aerial pair, an MCGF row one location (clean drone, weathered drone, satellite).
``compile_s`` is the first compiled step's time (forward and backward compiled, ASAM's second
pass run); two warm-up steps follow before the timed ones.

Every measurement is guarded: an exception (out-of-memory included) becomes an ``error`` entry
and the run goes on; each section gets a share of ``--budget-s`` and adapts its step counts to
it. Progress lines are flushed, and ``--out`` is rewritten after every section, so a killed run
leaves what it measured.

Without CUDA the command exits 2 unless ``--allow-cpu``: then every section runs at tiny sizes
(the ``smoke`` presets, a small gallery) on the CPU, which is how the tests exercise it.
"""

from __future__ import annotations

import argparse
import copy
import json
import math
import os
import platform
import signal
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import torch

from geoloc_lib.analysis.cost import build_for_cost, model_cost, pair_forward, pair_inputs
from geoloc_lib.bench.eval import (
    U160K_DIM,
    U160K_GALLERY,
    U160K_QUERIES,
    naive_agreement,
    synthetic_features,
    time_bare_matmul,
)
from geoloc_lib.core.device import autocast_dtype, to_device
from geoloc_lib.core.errors import ConfigError
from geoloc_lib.core.outputs import claim_output_dir
from geoloc_lib.core.paths import REPO_ROOT
from geoloc_lib.core.seeding import seed_everything
from geoloc_lib.eval.metrics import evaluate_university1652
from geoloc_lib.eval.ranking import DEFAULT_CHUNK_MB, auto_chunk_size
from geoloc_lib.training.amp import measure_throughput, random_batch, train_step
from geoloc_lib.training.optim import build_optimizer
from geoloc_lib.training.recipes import preset_for, recipe_for

# GeoViewMatch, Table 4 (RTX 4090, batch 16).
PAPER_TABLE4 = {"gflops": 9.76, "peak_mem_gb": 11.40, "latency_ms": 42.0, "batch": 16}
NO_CUDA_MESSAGE = (
    "geoloc bench gpu: no CUDA device (torch {torch} sees none); "
    "pass --allow-cpu to run it at tiny sizes on the CPU"
)
# Share of --budget-s per section (the compile run gets what is left).
SHARES = {"inference": 0.10, "train_geoviewmatch": 0.20, "train_mcgf": 0.20, "eval": 0.15}


def log(msg: str) -> None:
    print(msg, flush=True)


class Budget:
    """Wall-clock deadline of the run and of its current section."""

    def __init__(self, total_s: float) -> None:
        self.start = time.perf_counter()
        self.total_s = total_s
        self.section_end = self.start + total_s

    def elapsed(self) -> float:
        return time.perf_counter() - self.start

    def left(self) -> float:
        return self.total_s - self.elapsed()

    def open_section(self, share: float) -> float:
        seconds = min(self.left(), share * self.total_s)
        self.section_end = time.perf_counter() + seconds
        return seconds

    def section_left(self) -> float:
        return min(self.section_end - time.perf_counter(), self.left())


def _sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def _free(device: torch.device) -> None:
    import gc

    gc.collect()
    if device.type == "cuda":
        torch.cuda.empty_cache()


def _peak_gb(device: torch.device) -> float:
    return torch.cuda.max_memory_allocated(device) / 1e9 if device.type == "cuda" else math.nan


def _reset_peak(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.reset_peak_memory_stats(device)


def _is_oom(err: BaseException) -> bool:
    return isinstance(err, torch.cuda.OutOfMemoryError) or "out of memory" in str(err).lower()


def _error(err: BaseException) -> str:
    return f"{type(err).__name__}: {str(err).splitlines()[0] if str(err) else ''}"[:300]


def environment(device: torch.device) -> dict[str, Any]:
    env: dict[str, Any] = {
        "python": platform.python_version(),
        "torch": torch.__version__,
        "cuda": torch.version.cuda,
        "device": str(device),
        "device_name": platform.processor() or platform.machine(),
        "cpu_threads": torch.get_num_threads(),
        "tf32_matmul": torch.backends.cuda.matmul.allow_tf32,
        "tf32_cudnn": torch.backends.cudnn.allow_tf32,
    }
    if device.type == "cuda":
        props = torch.cuda.get_device_properties(device)
        env["device_name"] = props.name
        env["device_memory_gb"] = props.total_memory / 1e9
        env["cudnn"] = torch.backends.cudnn.version()
        env["bf16_supported"] = torch.cuda.is_bf16_supported()
    return env


# --------------------------------------------------------------------------- 1. inference


def bench_inference(
    preset: str, batch: int, repeats: int, device: torch.device, budget: Budget
) -> dict[str, Any]:
    """GeoViewMatch inference per batch of pairs: GFLOPs/pair, peak memory, latency."""
    seed_everything(0)
    net = build_for_cost("geoviewmatch", preset, device)
    inputs = pair_inputs(net, batch, device)
    out: dict[str, Any] = {"model": "geoviewmatch", "preset": preset, "batch": batch}
    for name, amp in (("fp32", "off"), ("bf16", "bf16")):
        dtype = autocast_dtype(amp)

        def forward(m: torch.nn.Module, x: Any, dtype: torch.dtype | None = dtype) -> Any:
            with torch.autocast(device.type, dtype=dtype, enabled=dtype is not None):
                return pair_forward(m, x)

        if budget.section_left() <= 0:
            out[name] = {"error": "skipped: section budget spent"}
            continue
        try:
            _free(device)
            # One timed call first, to fit the repeats into what is left of the section.
            _sync(device)
            t0 = time.perf_counter()
            with torch.no_grad():
                forward(net.eval(), inputs)
            _sync(device)
            first = time.perf_counter() - t0
            n = int(max(1, min(repeats, budget.section_left() / 2 / max(first, 1e-6))))
            cost = model_cost(net, inputs, forward=forward, repeats=n, warmup=2)
            out[name] = {
                "gflops_per_pair": cost["gflops"] / batch,
                "gmacs_per_pair": cost["gmacs"] / batch,
                "peak_mem_gb": cost["peak_mem_gb"],
                "tensor_mem_gb": cost["tensor_mem_gb"],
                "latency_ms": cost["latency_ms"],
                "pairs_per_s": batch / cost["latency_ms"] * 1e3,
                "repeats": n,
                "params_m": cost["params_m"],
            }
            r = out[name]
            log(
                f"  inference {name}: {r['gflops_per_pair']:.2f} GFLOPs/pair, peak "
                f"{r['peak_mem_gb']:.2f} GB, {r['latency_ms']:.1f} ms/batch of {batch} "
                f"(median of {n})"
            )
        except Exception as err:  # noqa: BLE001 - every measurement is guarded
            out[name] = {"error": _error(err)}
            log(f"  inference {name}: {out[name]['error']}")
    out["paper_table4"] = dict(PAPER_TABLE4, device="RTX 4090")
    del net
    _free(device)
    return out


# --------------------------------------------------------------------------- 2./3. training


def build_trainable(name: str, preset: str, batch: int) -> tuple[Any, ...]:
    """Random-weight model of a recipe, one random batch, the recipe's optimizer builder and the
    batch transform its training runs on the device (None: the model's ``batch_transform()``)."""
    recipe = recipe_for(name)
    settings = preset_for(name, preset).train
    seed_everything(0)
    model = build_for_cost(name, preset, "cpu", **recipe.data_config).train()

    def make_opt(m: torch.nn.Module) -> torch.optim.Optimizer:
        return build_optimizer(m, settings)

    if recipe.task == "street->aerial":
        transform = None  # the model's own augmentation (time_training)
    else:
        from geoloc_lib.training.mcgf import weather_batch_transform

        transform = weather_batch_transform()  # as train_mcgf: weather synthesised each step

    return model, random_batch(model, batch), make_opt, transform


def time_training(
    base: torch.nn.Module,
    batch: dict[str, Any],
    make_opt: Callable[[torch.nn.Module], torch.optim.Optimizer],
    amp: str,
    device: torch.device,
    budget: Budget,
    *,
    steps: int,
    warmup: int,
    seconds: float,
    compile_backend: str | None = None,
    transform: Callable[[dict[str, Any]], dict[str, Any]] | None = None,
) -> dict[str, Any]:
    """Images/s of full training steps on ``device`` (a copy of ``base`` is trained).

    ``warmup`` steps are timed one by one (the first apart: with ``compile_backend`` it is the
    compilation); the timed steps are then as many as fit ``seconds`` (at most ``steps``).
    """
    dtype = autocast_dtype(amp)
    model = copy.deepcopy(base).to(device).train()
    if compile_backend is not None:
        model.training_losses = torch.compile(model.training_losses, backend=compile_backend)
    opt = make_opt(model)
    transform = transform or model.batch_transform()
    b = to_device(batch, device)
    n = next(v.shape[0] for v in b.values() if isinstance(v, torch.Tensor) and v.ndim)
    _reset_peak(device)
    times = []
    for _ in range(max(1, warmup)):
        _sync(device)
        t0 = time.perf_counter()
        loss = train_step(model, b, opt, dtype, device.type, transform)
        _sync(device)
        times.append(time.perf_counter() - t0)
    left = min(seconds - sum(times), budget.section_left())
    per_step = times[-1]
    k = int(max(1, min(steps, left / max(per_step, 1e-6))))
    rate = measure_throughput(
        model, b, opt, amp=amp, steps=k, warmup=0, device=device, batch_transform=transform
    )
    out = {
        "batch": n,
        "img_per_s": rate,
        "step_ms": n / rate * 1e3,
        "first_step_s": times[0],
        "timed_steps": k,
        "peak_mem_gb": _peak_gb(device),
        "loss_finite": bool(torch.isfinite(loss).item()),
        "optimizer": type(opt).__name__,
    }
    del model, opt
    return out


def bench_training(
    name: str,
    preset: str,
    batch: int,
    amps: tuple[str, ...],
    device: torch.device,
    budget: Budget,
    *,
    steps: int,
    warmup: int,
    halve_on_oom: bool = False,
) -> dict[str, Any]:
    """``time_training`` for each AMP mode of ``amps``; ``halve_on_oom`` retries smaller batches."""
    out: dict[str, Any] = {"model": name, "preset": preset, "requested_batch": batch}
    n_amps = len(amps)
    for i, amp in enumerate(amps):
        key = "fp32" if amp == "off" else amp
        b = batch
        while True:
            if budget.section_left() <= 0:
                out[key] = {"error": "skipped: section budget spent"}
                break
            try:
                _free(device)
                model, data, make_opt, transform = build_trainable(name, preset, b)
                seconds = budget.section_left() / (n_amps - i)
                out[key] = time_training(
                    model, data, make_opt, amp, device, budget,
                    steps=steps, warmup=warmup, seconds=seconds, transform=transform,
                )  # fmt: skip
                if b != batch:
                    out[key]["note"] = f"batch {batch} ran out of memory; batch {b} fits"
                r = out[key]
                log(
                    f"  {name} train {key}: {r['img_per_s']:.1f} img/s at batch {b} "
                    f"({r['step_ms']:.0f} ms/step, {r['timed_steps']} steps, peak "
                    f"{r['peak_mem_gb']:.2f} GB, {r['optimizer']})"
                )
                break
            except Exception as err:  # noqa: BLE001 - every measurement is guarded
                if halve_on_oom and _is_oom(err) and b >= 4:  # batch norm needs 2
                    log(f"  {name} train {key}: out of memory at batch {b}; trying {b // 2}")
                    b //= 2
                    continue
                out[key] = {"error": _error(err), "batch": b}
                log(f"  {name} train {key}: {out[key]['error']}")
                break
            finally:
                model = data = make_opt = transform = None  # type: ignore[assignment]
                _free(device)
    return out


def bench_compile(
    preset: str,
    batch: int,
    device: torch.device,
    budget: Budget,
    *,
    backend: str,
    steps: int,
    min_budget_s: float,
) -> dict[str, Any]:
    """bf16 + ``torch.compile`` training of GeoViewMatch; compile time = first step's time."""
    left = budget.left()
    if left < min_budget_s:
        return {"error": f"skipped: {left:.0f} s left of the budget, {min_budget_s:.0f} s needed"}
    try:
        model, data, make_opt, transform = build_trainable("geoviewmatch", preset, batch)
        out = time_training(
            model, data, make_opt, "bf16", device, budget,
            steps=steps, warmup=2, seconds=left, compile_backend=backend, transform=transform,
        )  # fmt: skip
        out["compile_s"] = out.pop("first_step_s")
        out["backend"] = backend
        log(
            f"  geoviewmatch train bf16+compile ({backend}): compile {out['compile_s']:.1f} s, "
            f"{out['img_per_s']:.1f} img/s at batch {out['batch']}"
        )
    except Exception as err:  # noqa: BLE001 - a compile failure is a result
        out = {"error": _error(err), "backend": backend}
        log(f"  geoviewmatch train bf16+compile: {out['error']}")
    _free(device)
    return out


def compile_in_subprocess(s: dict[str, Any], budget: Budget, allow_cpu: bool) -> dict[str, Any]:
    """:func:`bench_compile` in a child ``geoloc bench gpu --sections compile``, killed when the
    budget ends: a compilation cannot be interrupted in-process. Its output goes to ours."""
    left = budget.left()
    if left < s["min_compile_s"]:
        return {
            "error": f"skipped: {left:.0f} s left of the budget, {s['min_compile_s']:.0f} s needed"
        }
    with tempfile.TemporaryDirectory(prefix="geoloc_gpu_compile_") as tmp:
        cmd = [
            sys.executable, "-m", "geoloc_lib.pipeline.cli", "bench", "gpu", "--sections", "compile",
            "--compile-in", "process", "--out", tmp, "--budget-s", f"{left:.0f}",
            "--min-compile-s", "0", "--preset", s["preset"], "--train-batch", str(s["train_batch"]),
            "--steps", str(s["steps"]), "--compile-backend", s["compile_backend"],
        ]  # fmt: skip
        if allow_cpu:
            cmd.append("--allow-cpu")
        sys.stdout.flush()
        # Its own session, so that a timeout kills inductor's compile workers with it.
        root = str(REPO_ROOT)
        paths = [root, *filter(None, [os.environ.get("PYTHONPATH")])]
        env = {**os.environ, "PYTHONPATH": os.pathsep.join(paths)}
        child = subprocess.Popen(cmd, start_new_session=True, env=env)
        try:
            child.wait(timeout=max(1.0, left))
        except BaseException as err:  # the timeout, or this process interrupted
            os.killpg(child.pid, signal.SIGKILL)
            child.wait()
            if not isinstance(err, subprocess.TimeoutExpired):
                raise
            return {
                "error": f"killed: compile + steps did not finish in the {left:.0f} s left",
                "backend": s["compile_backend"],
            }
        path = Path(tmp) / "gpu_bench.json"
        if not path.is_file():
            return {
                "error": "the compile subprocess wrote no result",
                "backend": s["compile_backend"],
            }
        found = json.loads(path.read_text())
        trained = found.get("train_geoviewmatch", {})
        return trained.get("bf16_compile", {"error": trained.get("error", "no result")})


# --------------------------------------------------------------------------- 4. evaluation


def bench_eval(
    n_queries: int, n_gallery: int, dim: int, n_naive: int, device: torch.device
) -> dict[str, Any]:
    """``evaluate_university1652`` on ``device`` against the bare chunked product."""
    t0 = time.perf_counter()
    query, gallery, q_labels, g_labels = synthetic_features(n_queries, n_gallery, dim)
    t_make = time.perf_counter() - t0
    chunk = min(auto_chunk_size(n_gallery, False, DEFAULT_CHUNK_MB), n_queries)
    gflop = 2.0 * n_queries * n_gallery * dim / 1e9
    log(f"  eval: features made in {t_make:.1f} s; chunk {chunk} queries")
    _reset_peak(device)
    t_before = time_bare_matmul(query, gallery, chunk, device, progress=False)
    _sync(device)
    t0 = time.perf_counter()
    metrics = evaluate_university1652(
        query, gallery, q_labels, g_labels, chunk_size=chunk, device=device, progress=False
    )
    _sync(device)
    t_eval = time.perf_counter() - t0
    peak = _peak_gb(device)
    t_after = time_bare_matmul(query, gallery, chunk, device, progress=False)
    t_matmul = (t_before + t_after) / 2
    log(
        f"  eval: evaluation {t_eval:.2f} s, bare matmul {t_before:.2f} / {t_after:.2f} s, "
        f"ratio {t_eval / t_matmul:.2f}x"
    )
    check = naive_agreement(query, gallery, q_labels, g_labels, n_naive, chunk, device)
    log(
        f"  eval: naive agreement on {check['n_queries']} queries: max |metric diff| "
        f"{check['max_metric_diff']:.3g}, identical rank lists {check['same_ranks']}"
    )
    return {
        "queries": n_queries,
        "gallery": n_gallery,
        "dim": dim,
        "chunk": chunk,
        "features_s": t_make,
        "eval_s": t_eval,
        "matmul_before_s": t_before,
        "matmul_after_s": t_after,
        "ratio_eval_matmul": t_eval / t_matmul,
        "eval_gflop_per_s": gflop / t_eval,
        "matmul_gflop_per_s": gflop / t_matmul,
        "peak_cuda_mem_gb": peak,
        "metrics": {k: float(v) for k, v in metrics.items()},
        "naive_check": check,
        "naive_extrapolated_s": check["naive_s_per_query"] * n_queries,
        "metrics_equal_naive": check["max_metric_diff"] <= 1e-6,
    }


# --------------------------------------------------------------------------- report


def summary_rows(result: dict[str, Any]) -> list[tuple[str, str, str]]:
    """(measurement, ours, paper) rows of the printed table."""
    rows: list[tuple[str, str, str]] = []

    def num(d: dict[str, Any], key: str, fmt: str) -> str:
        if "error" in d:
            return d["error"]
        v = d.get(key, math.nan)
        return "—" if v is None or v != v else format(v, fmt)

    inf = result.get("inference")
    if inf:
        b = inf.get("batch", "?")
        for name in ("fp32", "bf16"):
            d = inf.get(name, {"error": "not run"})
            rows += [
                (f"GeoViewMatch GFLOPs/pair ({name})", num(d, "gflops_per_pair", ".2f"), "9.76"),
                (
                    f"GeoViewMatch peak GB, batch {b} ({name})",
                    num(d, "peak_mem_gb", ".2f"),
                    "11.40",
                ),
                (f"GeoViewMatch ms/batch {b} ({name})", num(d, "latency_ms", ".1f"), "42"),
            ]
    for section, label in (("train_geoviewmatch", "GeoViewMatch"), ("train_mcgf", "MCGF")):
        tr = result.get(section)
        if not tr:
            continue
        for key in ("fp32", "bf16", "bf16_compile"):
            if key not in tr:
                continue
            d = tr[key]
            batch = d.get("batch", tr.get("requested_batch", "?"))
            rows.append(
                (f"{label} train img/s, batch {batch} ({key})", num(d, "img_per_s", ".1f"), "")
            )
            if key == "bf16_compile" and "error" not in d:
                rows.append(
                    (f"{label} compile time s ({d['backend']})", num(d, "compile_s", ".1f"), "")
                )
    ev = result.get("eval")
    if ev:
        if "error" in ev:
            rows.append(("eval", ev["error"], ""))
        else:
            scale = f"{ev['queries']}x{ev['gallery']}x{ev['dim']}"
            rows += [
                (f"eval {scale} s", num(ev, "eval_s", ".2f"), ""),
                ("bare chunked matmul s (mean of 2)", format((ev["matmul_before_s"] + ev["matmul_after_s"]) / 2, ".2f"), ""),
                ("eval / matmul", num(ev, "ratio_eval_matmul", ".2f"), ""),
                ("eval peak CUDA GB", num(ev, "peak_cuda_mem_gb", ".2f"), ""),
                ("metrics equal to naive (1e-6)", "yes" if ev["metrics_equal_naive"] else "NO", ""),
            ]  # fmt: skip
    return rows


def markdown(result: dict[str, Any]) -> str:
    env = result["environment"]
    head = (
        f"geoloc bench gpu on {env['device_name']} ({env['device']}), torch {env['torch']}, "
        f"CUDA {env['cuda']}; random weights; paper: GeoViewMatch Table 4 (RTX 4090)"
    )
    lines = [head, "", "| measurement | ours | paper |", "|---|---|---|"]
    lines += [f"| {a} | {b} | {c} |" for a, b, c in summary_rows(result)]
    lines.append("")
    lines.append(f"wall time {result.get('wall_s', math.nan):.0f} s")
    return "\n".join(lines) + "\n"


def _strict(value: Any) -> Any:
    """JSON-safe: NaN/inf become null, anything unknown its string."""
    if isinstance(value, dict):
        return {str(k): _strict(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [_strict(v) for v in value]
    if isinstance(value, float):
        return value if math.isfinite(value) else None
    if value is None or isinstance(value, bool | int | str):
        return value
    return str(value)


def _write(out: Path | None, result: dict[str, Any]) -> None:
    if out is None:
        return
    out.mkdir(parents=True, exist_ok=True)
    (out / "gpu_bench.json").write_text(json.dumps(_strict(result), indent=2) + "\n")
    try:  # the summary must never cost the measurements: they are in the JSON already
        text = markdown(result)
    except Exception as err:  # noqa: BLE001
        text = f"summary table failed ({type(err).__name__}: {err}); see gpu_bench.json\n"
    (out / "gpu_bench.md").write_text(text)


# --------------------------------------------------------------------------- command


SECTIONS = ("inference", "train", "mcgf", "eval", "compile")


def _settings(args: argparse.Namespace, cuda: bool) -> dict[str, Any]:
    def pick(value: Any, gpu: Any, cpu: Any) -> Any:
        return value if value is not None else (gpu if cuda else cpu)

    s = {
        "budget_s": pick(args.budget_s, 390.0, 120.0),
        "preset": pick(args.preset, "paper", "smoke"),
        "infer_batch": pick(args.infer_batch, 16, 2),
        "repeats": pick(args.repeats, 20, 2),
        "train_batch": args.train_batch,
        "mcgf_batch": pick(args.mcgf_batch, 16, 2),
        "steps": pick(args.steps, 10, 2),
        "warmup": 3 if cuda else 1,
        "queries": pick(args.queries, U160K_QUERIES, 300),
        "gallery": pick(args.gallery, U160K_GALLERY, 3000),
        "dim": pick(args.dim, U160K_DIM, 64),
        "naive_queries": pick(args.naive_queries, 100, 20),
        "compile_backend": pick(args.compile_backend, "inductor", "eager"),
        "min_compile_s": pick(args.min_compile_s, 60.0, 1.0),
        "compile_in": pick(args.compile_in, "subprocess", "process"),
    }
    for key in ("infer_batch", "repeats", "mcgf_batch", "steps", "queries", "gallery", "dim"):
        if s[key] < 1:
            raise ConfigError(f"bench gpu --{key.replace('_', '-')}: expected >= 1, got {s[key]}")
    if s["train_batch"] is None:
        s["train_batch"] = preset_for("geoviewmatch", s["preset"]).train.batch_size
    sections = [str(x) for x in args.sections]
    unknown = sorted(set(sections) - set(SECTIONS))
    if unknown:
        raise ConfigError(f"bench gpu --sections: unknown {unknown}; valid: {', '.join(SECTIONS)}")
    s["sections"] = sections
    return s


def main(args: argparse.Namespace) -> int:
    out: Path | None = None
    if args.out is not None:  # geoloc's, new or empty (checked before any measurement)
        out = claim_output_dir(args.out, "--out folder", kind="bench gpu", force=args.force)
    cuda = torch.cuda.is_available()
    if not cuda and not args.allow_cpu:
        print(NO_CUDA_MESSAGE.format(torch=torch.__version__), file=sys.stderr)
        return 2
    s = _settings(args, cuda)
    device = torch.device("cuda", torch.cuda.current_device()) if cuda else torch.device("cpu")
    budget = Budget(s["budget_s"])
    env = environment(device)
    log(
        f"geoloc bench gpu: torch {env['torch']}, CUDA {env['cuda']}, Python {env['python']}, "
        f"device {env['device_name']} ({device}"
        + (f", {env['device_memory_gb']:.0f} GB" if cuda else "")
        + f"); budget {s['budget_s']:.0f} s"
    )
    result: dict[str, Any] = {"environment": env, "settings": s}

    def section(key: str, title: str, share: float, run: Callable[[], dict[str, Any]]) -> None:
        seconds = budget.open_section(share)
        log(f"[{budget.elapsed():5.0f} s] {title} (budget {seconds:.0f} s)")
        try:
            result[key] = run()
        except Exception as err:  # noqa: BLE001 - the run goes on
            result[key] = {"error": _error(err)}
            log(f"  {title}: {result[key]['error']}")
        result["wall_s"] = budget.elapsed()
        _write(out, result)

    preset = s["preset"]
    if "inference" in s["sections"]:
        section(
            "inference",
            f"1. GeoViewMatch inference ({preset}, batch {s['infer_batch']})",
            SHARES["inference"],
            lambda: bench_inference(preset, s["infer_batch"], s["repeats"], device, budget),
        )
    if "train" in s["sections"]:
        section(
            "train_geoviewmatch",
            f"2. GeoViewMatch training ({preset}, batch {s['train_batch']})",
            SHARES["train_geoviewmatch"],
            lambda: bench_training(
                "geoviewmatch", preset, s["train_batch"], ("off", "bf16"), device, budget,
                steps=s["steps"], warmup=s["warmup"],
            ),
        )  # fmt: skip
    if "mcgf" in s["sections"]:
        section(
            "train_mcgf",
            f"3. MCGF training ({preset}, batch {s['mcgf_batch']})",
            SHARES["train_mcgf"],
            lambda: bench_training(
                "mcgf", preset, s["mcgf_batch"], ("bf16", "off"), device, budget,
                steps=s["steps"], warmup=s["warmup"], halve_on_oom=True,
            ),
        )  # fmt: skip
    if "eval" in s["sections"]:
        section(
            "eval",
            f"4. evaluation {s['queries']} x {s['gallery']} x {s['dim']}",
            SHARES["eval"],
            lambda: bench_eval(s["queries"], s["gallery"], s["dim"], s["naive_queries"], device),
        )
    if "compile" in s["sections"]:

        def run_compile() -> dict[str, Any]:
            trained = result.setdefault(
                "train_geoviewmatch",
                {"model": "geoviewmatch", "preset": preset, "requested_batch": s["train_batch"]},
            )
            try:  # an error here must not replace the fp32/bf16 results of section 2
                if s["compile_in"] == "subprocess":
                    trained["bf16_compile"] = compile_in_subprocess(s, budget, args.allow_cpu)
                else:
                    trained["bf16_compile"] = bench_compile(
                        preset, s["train_batch"], device, budget, backend=s["compile_backend"],
                        steps=s["steps"], min_budget_s=s["min_compile_s"],
                    )  # fmt: skip
            except Exception as err:  # noqa: BLE001
                trained["bf16_compile"] = {"error": _error(err), "backend": s["compile_backend"]}
            return trained

        section(
            "train_geoviewmatch",
            f"5. GeoViewMatch training bf16 + torch.compile ({s['compile_backend']})",
            1.0,
            run_compile,
        )
    result["wall_s"] = budget.elapsed()
    _write(out, result)
    log("")
    log(markdown(result))
    return 0
