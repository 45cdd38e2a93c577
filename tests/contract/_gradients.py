"""The rule the training contracts share (encoders, fusion methods, models): after one backward
pass from what the component is trained on, every trainable parameter has a gradient, some of
them non-zero, all finite.

A parameter outside the graph of the loss never trains on one process, and data-parallel
training refuses it (DDP's ``find_unused_parameters``) only once a launched job reaches its first
step; so the contract suites refuse it here, naming the parameters."""

from __future__ import annotations

from torch import nn


def check_every_parameter_trains(module: nn.Module, *, where: str, source: str, doc: str,
                                 skips: bool = False) -> None:
    """Asserts the rule on ``module`` after its backward pass: ``where`` names the component in
    the messages, ``source`` says what the backward started from, ``doc`` where the rule is stated.
    ``skips``: the component declares that some steps leave some parameters without a gradient
    (``TrainableModel.skips_parameters``), so a missing one is allowed; a non-finite one is not."""
    grads = {name: p.grad for name, p in module.named_parameters() if p.requires_grad}
    assert grads, f"{where}: no trainable parameter (none with requires_grad)"
    assert any(g is not None and g.abs().sum() > 0 for g in grads.values()), (
        f"{where}: every gradient from {source} is zero or missing; nothing would train")
    bad = [name for name, g in grads.items() if g is not None and not g.isfinite().all()]
    assert not bad, f"{where}: non-finite gradients from {source} for parameters {bad}"
    unused = [] if skips else [name for name, g in grads.items() if g is None]
    assert not unused, (
        f"parameters {unused} get no gradient from {source}; use every parameter in forward or do not create it "
        f"({doc})")
