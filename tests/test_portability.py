"""What is deterministic by construction is byte-identical under every CPU kernel set.

PyTorch picks its CPU kernels at run time (``ATEN_CPU_CAPABILITY``: default, avx2, avx512),
MKL its vector-math and FFT paths (``MKL_ENABLE_INSTRUCTIONS``) and numpy its SIMD loops
(``NPY_DISABLE_CPU_FEATURES``). Forcing each on one machine reproduces what another CPU would
run. The weather renderings of fixed inputs and GeoSynth's content hash must not change
(``geoloc_lib/core/portable_ops.py`` says which ops would change them and how they are avoided).

Trained models are not covered: their numbers differ in the last bits between kernel sets and
are compared with a tolerance (``test_smoke_results.py``).
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

PROBE = Path(__file__).with_name("portability_probe.py")

# Each entry is what another machine would run; the first is this machine as it is.
KERNEL_SETS = {
    "native": {},
    "a CPU without AVX2": {
        "ATEN_CPU_CAPABILITY": "default",
        "MKL_ENABLE_INSTRUCTIONS": "SSE4_2",
        "NPY_DISABLE_CPU_FEATURES": "X86_V3 X86_V4 AVX512_ICL AVX512_SPR",
        "PROBE_THREADS": "2",
    },
    "an AVX2 CPU": {
        "ATEN_CPU_CAPABILITY": "avx2",
        "MKL_ENABLE_INSTRUCTIONS": "AVX2",
        "NPY_DISABLE_CPU_FEATURES": "X86_V4 AVX512_ICL AVX512_SPR",
    },
}


def _probe(tmp_path: Path, name: str, extra: dict[str, str]) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if k not in ("ATEN_CPU_CAPABILITY",)}
    env.update(extra)
    out = tmp_path / name.replace(" ", "_")
    proc = subprocess.run(
        [sys.executable, str(PROBE), str(out)],
        env=env,
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert proc.returncode == 0, f"{name}: {proc.stderr[-2000:]}"
    return json.loads(proc.stdout.strip().splitlines()[-1])


@pytest.fixture(scope="module")
def digests(tmp_path_factory) -> dict[str, dict[str, str]]:
    base = tmp_path_factory.mktemp("portability")
    return {name: _probe(base, name, env) for name, env in KERNEL_SETS.items()}


def test_the_kernel_sets_are_really_different(digests):
    assert digests["a CPU without AVX2"]["capability"] == "DEFAULT"
    assert digests["an AVX2 CPU"]["capability"] == "AVX2"


@pytest.mark.parametrize("what", ["weather/", "geosynth/"])
def test_bytes_identical_under_every_kernel_set(digests, what):
    reference = digests["native"]
    keys = [k for k in reference if k.startswith(what)]
    assert keys
    for name, result in digests.items():
        differ = [k for k in keys if result[k] != reference[k]]
        assert not differ, f"{name} ({result['capability']}) changes {differ}"
