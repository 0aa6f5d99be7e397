"""Digests of what must be byte-identical on every CPU: run as a script under different kernel
sets by ``test_portability.py`` (``python tests/portability_probe.py OUT_DIR``).

Prints one JSON object: the kernel set torch picked, a sha256 per weather rendering of fixed
inputs (every condition, banked and exact, at the image's scale and at a 512 reference) and the
content hash of a ``tiny`` GeoSynth generated under ``OUT_DIR``.
"""

from __future__ import annotations

import hashlib
import json
import os
import sys

import torch

from geoloc_lib.data.geosynth import PROFILES, generate_geosynth
from geoloc_lib.weather.synth import CONDITIONS, WeatherSynth


def weather_digests() -> dict[str, str]:
    images = torch.rand(4, 3, 48, 64, generator=torch.Generator().manual_seed(0))
    seeds = torch.arange(4, dtype=torch.int64) * 7919 + 11
    out = {}
    for exact in (False, True):
        for reference in (None, 512):
            synth = WeatherSynth(reference, exact=exact)
            for index, name in enumerate(CONDITIONS):
                rendered, _ = synth(images, torch.full((4,), index), seeds=seeds)
                key = f"weather/{name}/{'exact' if exact else 'banked'}/{reference}"
                out[key] = hashlib.sha256(rendered.numpy().tobytes()).hexdigest()
    return out


def main(out_dir: str) -> None:
    torch.set_num_threads(int(os.environ.get("PROBE_THREADS", "1")))
    result = {"capability": torch.backends.cpu.get_cpu_capability(), **weather_digests()}
    generate_geosynth(out_dir, profile=PROFILES["tiny"], seed=0, progress=False, workers=1)
    with open(os.path.join(out_dir, "geosynth.json")) as f:
        result["geosynth/content_sha256"] = json.load(f)["content_sha256"]
    print(json.dumps(result))


if __name__ == "__main__":
    main(sys.argv[1])
