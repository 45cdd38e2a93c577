"""Point-to-point tensors between pipeline stages outside a schedule: the evaluation forward
(``PipelineStrategy.evaluate``) and served decoding (:mod:`deepseek_pro.strategies.pipeline_decode`)
send each stage's output to the next stage's ranks as fp32, its shape first."""

from __future__ import annotations

import torch
import torch.distributed as dist

HEADER = 8
"""int64 slots of the shape header: the number of dimensions, then up to 7 sizes."""


def send_tensor(tensor: torch.Tensor, dst: int, comm_device: torch.device) -> None:
    """``tensor`` to rank ``dst`` as fp32: its shape first, then the values."""
    shape = torch.tensor([tensor.dim(), *tensor.shape], dtype=torch.int64, device=comm_device)
    dist.send(torch.nn.functional.pad(shape, (0, HEADER - shape.numel())), dst=dst)
    dist.send(tensor.float().contiguous().to(comm_device), dst=dst)


def recv_tensor(src: int, comm_device: torch.device, device: torch.device) -> torch.Tensor:
    """A tensor :func:`send_tensor` sent from rank ``src``, on ``device``."""
    header = torch.zeros(HEADER, dtype=torch.int64, device=comm_device)
    dist.recv(header, src=src)
    dims = [int(v) for v in header[1 : 1 + int(header[0])].tolist()]
    out = torch.empty(dims, dtype=torch.float32, device=comm_device)
    dist.recv(out, src=src)
    return out.to(device)
