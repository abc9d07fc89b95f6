"""Host syncs: the counter sees what would stall a GPU, and a steady-state training step (stage 1 with
either eye model, on a grid-refresh step too, and stage 2) makes at most two."""

from __future__ import annotations

import pytest
import torch
from conftest import tiny_cfg

from eyefast.core.syncs import HostSyncCounter
from eyefast.training import Trainer

#: the bound of the issue: the sampler's sample count and the pruning's kept count
MAX_SYNCS = 2


def test_the_counter_sees_what_stalls_a_gpu():
    x = torch.randn(100)
    with HostSyncCounter() as c:
        float(x.sum())
        bool((x > 0).any())
        x[x > 0]
        x[x > 0] = 0.0
        torch.nonzero(x)
        torch.tensor([1.0, 2.0])
        torch.repeat_interleave(torch.arange(3), torch.tensor([1, 2, 3]))
    assert c.by_op["_local_scalar_dense"] == 2
    assert c.by_op["index[bool mask]"] == 1 and c.by_op["index_put_[bool mask]"] == 1
    assert c.by_op["nonzero"] == 1 and c.by_op["repeat_interleave"] == 1
    assert c.by_op["tensor from Python data"] == 2 + 1  # the repeats above too
    with HostSyncCounter() as c:  # device-side work only
        y = torch.where(x > 0, x, 0.0).sum() / (x > 0).sum().clamp_min(1)
        x.index_select(0, torch.arange(10))
        torch.randint(0, 5, (10,))
        y + x.new_full((3,), 2.0)
    assert c.count == 0, dict(c.by_op)


def _steady_syncs(tr, steps=3):
    counts = []
    for _ in range(steps):
        with HostSyncCounter() as c:
            tr.step_async()
        counts.append((tr.step - 1, c.count, dict(c.by_op)))
    return counts


@pytest.mark.parametrize("extra", [(), ("eye_model=cornea",), ("data.ignore_eyeball=true",)])
def test_a_training_step_makes_at_most_two_host_syncs(tiny, tmp_path, extra):
    tr = Trainer(tiny_cfg(tiny, tmp_path, "renderer.grid_update_freq=4", *extra), quiet=True)
    for _ in range(7):
        tr.train_step()
    counts = _steady_syncs(tr, 3)  # steps 7, 8 (a grid refresh), 9
    assert any(s % 4 == 0 for s, _, _ in counts)
    for step, n, ops in counts:
        assert n <= MAX_SYNCS, (step, ops)


def test_a_stage2_step_makes_no_host_sync(tiny, tmp_path):
    tr = Trainer(tiny_cfg(tiny, tmp_path, "train.mesh_render=true", "train.mesh_render_iter=3",
                          "train.mesh_resolution=40"), quiet=True)
    for _ in range(4):  # the mesh and its pixel pool are made in the first stage-2 step
        tr.train_step()
    for step, n, ops in _steady_syncs(tr, 2):
        assert n == 0, (step, ops)


def test_scalars_are_read_once_per_log_interval(tiny, tmp_path, monkeypatch):
    tr = Trainer(tiny_cfg(tiny, tmp_path, "train.log_every=4", "train.max_steps=9"), quiet=True)
    reads = []
    orig = tr._read
    monkeypatch.setattr(tr, "_read", lambda res: (reads.append(tr.step), orig(res))[1])
    tr.fit()
    assert reads == [4, 8, 9]  # every log_every steps, and the last one
