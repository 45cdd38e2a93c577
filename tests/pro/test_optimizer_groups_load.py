"""``load_optimizer_groups`` (every pro strategy's optimizer restore) leaves the optimizer's
settings as they were saved: torch's ``set_optimizer_state_dict`` turned AdamW's ``betas`` tuple
into a list, so a resumed run's checkpoints held ``"betas": [..]`` where a run never resumed holds
``{"__tuple__": [..]}``: its optimizer file's bytes differed (test_kill_resume_launch found it)."""

from __future__ import annotations

from pathlib import Path

import torch
from torch.distributed.checkpoint.state_dict import StateDictOptions, get_optimizer_state_dict

from deepseek.training import checkpoint as ckpt
from deepseek_pro.checkpoint import load_optimizer_groups


def test_a_restored_optimizer_saves_the_bytes_it_was_restored_from(tmp_path: Path) -> None:
    torch.manual_seed(0)
    module = torch.nn.Sequential(torch.nn.Linear(3, 4), torch.nn.Linear(4, 2))
    optimizer = torch.optim.AdamW(module.parameters(), lr=1e-3, betas=(0.8, 0.9))
    module(torch.randn(5, 3)).sum().backward()
    optimizer.step()
    names = [name for name, _ in module.named_parameters()]
    ckpt.save_optimizer_state(tmp_path / "before.safetensors", optimizer, names)
    options = StateDictOptions(full_state_dict=True)
    saved = get_optimizer_state_dict(module, optimizer, options=options)

    load_optimizer_groups(module, optimizer, saved, options=options)
    assert optimizer.param_groups[0]["betas"] == (0.8, 0.9)
    ckpt.save_optimizer_state(tmp_path / "after.safetensors", optimizer, names)
    assert (tmp_path / "after.safetensors").read_bytes() == (tmp_path / "before.safetensors").read_bytes()
