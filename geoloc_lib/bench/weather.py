"""``geoloc bench weather``: images/s of the weather synthesis per condition and for the mix.

Prints one row per condition and one for the uniform mix (each image a random condition),
and checks the project's target: the mix at 256x256, batch 32, at least 200 images/s on CPU.
The texture banks are built by a first untimed call (its time is printed: a one-off per image
size); ``--exact`` times the unbanked reference path instead.
"""

from __future__ import annotations

import argparse
import time

import torch

from geoloc_lib.core.errors import ConfigError
from geoloc_lib.weather.synth import CONDITIONS, WeatherSynth

TARGET_IMAGES_PER_S = 200.0


def _rate(
    synth: WeatherSynth,
    images: torch.Tensor,
    conditions: torch.Tensor | None,
    repeats: int,
    seed: int,
) -> float:
    g = torch.Generator().manual_seed(seed)
    synth(images, conditions, generator=g)  # warm-up (allocator, kernels)
    if images.device.type == "cuda":
        torch.cuda.synchronize()
    start = time.perf_counter()
    for _ in range(repeats):
        synth(images, conditions, generator=g)
    if images.device.type == "cuda":
        torch.cuda.synchronize()
    return images.shape[0] * repeats / (time.perf_counter() - start)


def run_benchmark(
    size: int = 256,
    batch: int = 32,
    repeats: int = 3,
    device: str = "cpu",
    seed: int = 0,
    exact: bool = False,
    synth_threads: int | None = 1,
) -> dict[str, float]:
    """images/s for each condition and for ``mix`` (uniform random conditions); ``build_s``:
    seconds of the first call on a batch holding every condition (texture banks)."""
    if size < 8 or batch < 1 or repeats < 1:
        raise ConfigError("bench weather needs --size >= 8, --batch >= 1, --repeats >= 1")
    g = torch.Generator().manual_seed(seed)
    # A natural-ish test card: smooth colour fields plus texture, values in [0, 1].
    images = torch.rand(batch, 3, size // 8, size // 8, generator=g)
    images = torch.nn.functional.interpolate(images, size=(size, size), mode="bilinear")
    images = (images + 0.1 * torch.rand(batch, 3, size, size, generator=g)).clamp(0, 1)
    images = images.to(device)
    synth = WeatherSynth(exact=exact, threads=synth_threads)
    start = time.perf_counter()
    every = torch.arange(len(CONDITIONS))
    synth(images[:1].expand(len(every), -1, -1, -1), every, seeds=every)
    rates: dict[str, float] = {"build_s": time.perf_counter() - start}
    for index, name in enumerate(CONDITIONS):
        conditions = torch.full((batch,), index, dtype=torch.long)
        rates[name] = _rate(synth, images, conditions, repeats, seed)
    rates["mix"] = _rate(synth, images, None, repeats, seed)
    return rates


def main(args: argparse.Namespace) -> int:
    if args.threads:
        torch.set_num_threads(args.threads)
    synth_threads = args.synth_threads or None
    rates = run_benchmark(
        args.size, args.batch, args.repeats, args.device, args.seed, args.exact, synth_threads
    )
    build_s = rates.pop("build_s")
    mode = "exact (unbanked)" if args.exact else "texture banks"
    inner = synth_threads or torch.get_num_threads()
    print(
        f"weather synthesis ({mode}), {args.size}x{args.size}, batch {args.batch}, device "
        f"{args.device}, {torch.get_num_threads()} CPU threads ({inner} inside the synthesis)"
    )
    print(f"first call (bank build, one-off per image size): {build_s:.2f} s")
    print(f"{'condition':<12} {'images/s':>10} {'ms/image':>10}")
    for name, rate in rates.items():
        print(f"{name:<12} {rate:>10.1f} {1000.0 / rate:>10.2f}")
    mix = rates["mix"]
    ok = mix >= TARGET_IMAGES_PER_S
    verdict = "MET" if ok else "NOT MET"
    if (args.size, args.batch, args.device) != (256, 32, "cpu"):
        verdict += " (but not measured in the target's setting)"
    print(
        f"target: uniform mix >= {TARGET_IMAGES_PER_S:.0f} images/s (256x256, batch 32, CPU): "
        f"{mix:.1f} images/s = {mix / TARGET_IMAGES_PER_S:.2f}x target -> {verdict}"
    )
    return 0
