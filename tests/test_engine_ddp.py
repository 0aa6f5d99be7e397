"""The engine's distributed path: ``torchrun --nproc_per_node=2`` with gloo on CPU.

The worker trains a tiny regression model with ``fit`` on a ShardedSampler loader. Checks: each
rank sees its own half of every epoch, the ranks end with identical weights and histories, only
one set of logs/checkpoints is written, and the 2x2 run equals a single-process run with batch 4
(DDP averages the two ranks' gradients, i.e. the mean over the same four samples).
"""

from __future__ import annotations

import importlib.util
import json
import os
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest
import torch

WORKER = textwrap.dedent(
    """
    import json, sys
    from pathlib import Path

    import torch
    from torch import nn
    from torch.utils.data import DataLoader, Dataset

    from geoloc_lib.data.university_torch import ShardedSampler
    from geoloc_lib.core.distributed import cleanup_distributed, setup_distributed
    from geoloc_lib.core.seeding import seed_everything
    from geoloc_lib.training.engine import FitConfig, fit

    N, SEED = 16, 7


    class Data(Dataset):
        def __init__(self):
            g = torch.Generator().manual_seed(0)
            self.x = torch.randn(N, 5, generator=g)
            self.y = self.x @ torch.arange(1.0, 6.0) + 0.1 * torch.randn(N, generator=g)

        def __len__(self):
            return N

        def __getitem__(self, i):
            return {"x": self.x[i], "y": self.y[i], "index": i}


    class Reg(nn.Module):
        def __init__(self):
            super().__init__()
            self.lin = nn.Linear(5, 1)

        def training_losses(self, batch):
            mse = (self.lin(batch["x"]).squeeze(1) - batch["y"]).pow(2).mean()
            return {"loss": mse}

        def embed(self, images, view):
            return nn.functional.normalize(self.lin.weight, dim=-1)


    def run(out, batch_size, rank=None, world_size=None):
        seed_everything(SEED)
        model = Reg()
        sampler = ShardedSampler(N, seed=SEED, rank=rank, world_size=world_size)
        loader = DataLoader(Data(), batch_size=batch_size, sampler=sampler)
        opt = torch.optim.SGD(model.parameters(), lr=0.05, momentum=0.9)
        seen = []

        def record(batch):
            seen.append(batch["index"].tolist())
            return batch

        val = lambda m, epoch: {"val_w": float(m.lin.weight.sum())}
        hist = fit(model, loader, opt, FitConfig(epochs=2, out_dir=out, device="cpu", progress=False),
                   validate=val, batch_transform=record)
        return model, hist, seen


    if __name__ == "__main__":
        info = setup_distributed("gloo")
        out = Path(sys.argv[1])
        model, hist, seen = run(out / "run", batch_size=2)
        torch.save(model.state_dict(), out / f"rank{info.rank}.pt")
        timings = ("time_s", "images_per_s", "data_s", "transform_s", "validate_s")
        records = [{k: v for k, v in r.items() if k not in timings}
                   for r in hist.records]
        (out / f"rank{info.rank}.json").write_text(
            json.dumps({"seen": seen, "history": records, "world": info.world_size}))
        cleanup_distributed()
    """
)


def _load_worker(path: Path):
    spec = importlib.util.spec_from_file_location("ddp_worker", path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


@pytest.mark.distributed
def test_two_process_gloo_run(tmp_path):
    script = tmp_path / "ddp_worker.py"
    script.write_text(WORKER)
    env = dict(os.environ, OMP_NUM_THREADS="1")
    cmd = [
        sys.executable,
        "-m",
        "torch.distributed.run",
        "--standalone",
        "--nproc_per_node=2",
        str(script),
        str(tmp_path),
    ]
    proc = subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]

    r0, r1 = (json.loads((tmp_path / f"rank{r}.json").read_text()) for r in (0, 1))
    assert r0["world"] == r1["world"] == 2
    # Sampler sharding: per epoch (4 steps of 2) the ranks' samples are disjoint and cover all 16.
    for epoch in range(2):
        a = sum(r0["seen"][4 * epoch : 4 * epoch + 4], [])
        b = sum(r1["seen"][4 * epoch : 4 * epoch + 4], [])
        assert not set(a) & set(b) and sorted(a + b) == list(range(16))
    assert r0["seen"][:4] != r0["seen"][4:]  # reshuffled per epoch

    # Identical results across ranks: weights bit-equal, histories (losses, val) equal.
    w0, w1 = (torch.load(tmp_path / f"rank{r}.pt") for r in (0, 1))
    for k in w0:
        assert torch.equal(w0[k], w1[k]), k
    assert r0["history"] == r1["history"]
    assert [r["epoch"] for r in r0["history"]] == [1, 2] and "val_w" in r0["history"][0]

    # Rank 0 alone wrote the logs and checkpoint.
    run = tmp_path / "run"
    assert sorted(p.name for p in run.iterdir()) == [
        "checkpoint_last.pt",
        "history.csv",
        "history.json",
    ]
    ckpt = torch.load(run / "checkpoint_last.pt", weights_only=False)
    assert len(ckpt["rng"]) == 2  # every rank's RNG state, for a distributed resume
    for k in w0:
        assert torch.equal(ckpt["model"][k], w0[k])

    # Against expectations: the same as one process with batch 4 over the same samples.
    worker = _load_worker(script)
    single, hist, _ = worker.run(tmp_path / "single", batch_size=4, rank=0, world_size=1)
    for k, v in single.state_dict().items():
        torch.testing.assert_close(v, w0[k], rtol=1e-5, atol=1e-6)
    assert hist.records[-1]["loss"] == pytest.approx(r0["history"][-1]["loss"], rel=1e-5)
