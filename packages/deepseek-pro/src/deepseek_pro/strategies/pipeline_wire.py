"""Point-to-point tensors between pipeline stages outside a schedule: the evaluation forward
(``PipelineStrategy.evaluate``) and served decoding (:mod:`deepseek_pro.strategies.pipeline_decode`)
send each stage's output to the next stage's ranks as fp32, its shape first. A stage whose code
raised sends :func:`send_refusal` in its place, so the stages after it skip their forward rather
than wait for a tensor that never comes (the error itself reaches every rank after the forward: in
an evaluation through the strategy's agreement, :mod:`deepseek_pro.strategies.pipeline_metrics`;
in decoding through the last stage's broadcast, :mod:`deepseek_pro.strategies.pipeline_decode`)."""

from __future__ import annotations

import torch
import torch.distributed as dist

HEADER = 8
"""int64 slots of the shape header: the number of dimensions, then up to 7 sizes."""

REFUSED = -1
"""The number of dimensions of a header that stands for no tensor: the sending stage refused."""


def send_tensor(tensor: torch.Tensor, dst: int, comm_device: torch.device) -> None:
    """``tensor`` to rank ``dst`` as fp32: its shape first, then the values."""
    shape = torch.tensor([tensor.dim(), *tensor.shape], dtype=torch.int64, device=comm_device)
    dist.send(torch.nn.functional.pad(shape, (0, HEADER - shape.numel())), dst=dst)
    dist.send(tensor.float().contiguous().to(comm_device), dst=dst)


def send_refusal(dst: int, comm_device: torch.device) -> None:
    """A header without a tensor to rank ``dst``: this stage has no output to send."""
    header = torch.zeros(HEADER, dtype=torch.int64, device=comm_device)
    header[0] = REFUSED
    dist.send(header, dst=dst)


def recv_output(src: int, comm_device: torch.device, device: torch.device) -> torch.Tensor | None:
    """A tensor :func:`send_tensor` sent from rank ``src``, on ``device``; ``None`` for a
    :func:`send_refusal`."""
    header = torch.zeros(HEADER, dtype=torch.int64, device=comm_device)
    dist.recv(header, src=src)
    if int(header[0]) == REFUSED:
        return None
    dims = [int(v) for v in header[1 : 1 + int(header[0])].tolist()]
    out = torch.empty(dims, dtype=torch.float32, device=comm_device)
    dist.recv(out, src=src)
    return out.to(device)

