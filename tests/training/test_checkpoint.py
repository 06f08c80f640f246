"""Checkpoints round-trip model and optimizer state through safetensors + JSON (no pickle)."""
import torch

from apudae.training.checkpoint import load_checkpoint, save_checkpoint
from apudae.training.loops import one_cycle_lr


def _step(model, optimizer):
    loss = model(torch.ones(2, 3)).pow(2).sum()
    optimizer.zero_grad()
    loss.backward()
    optimizer.step()


def test_resume_continues_exactly(tmp_path):
    torch.manual_seed(0)
    model = torch.nn.Linear(3, 2)
    optimizer = torch.optim.Adam(model.parameters(), lr=0.1)
    _step(model, optimizer)
    save_checkpoint(tmp_path / "part", model, optimizer, {"epoch": 1})
    _step(model, optimizer)
    uninterrupted = model.weight.detach().clone()

    restored = torch.nn.Linear(3, 2)
    restored_opt = torch.optim.Adam(restored.parameters(), lr=0.1)
    assert load_checkpoint(tmp_path / "part", restored, restored_opt)["epoch"] == 1
    _step(restored, restored_opt)
    assert torch.allclose(restored.weight, uninterrupted)


def test_no_checkpoint_means_a_fresh_start(tmp_path):
    model = torch.nn.Linear(3, 2)
    assert load_checkpoint(tmp_path / "none", model, torch.optim.SGD(model.parameters(), lr=0.1)) is None


def test_one_cycle_schedule_rises_then_falls_to_zero():
    lrs = [one_cycle_lr(s, 100, 1.0) for s in range(101)]
    assert lrs[0] == 0 and max(lrs) == 1.0 and lrs.index(1.0) == 20 and lrs[100] == 0
