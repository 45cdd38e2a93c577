"""``deepseek.graph.serving.export_serving``: a model over a batch of several tensors (capability
``serving``) exported with its rows dynamic; the ``.pt2`` file gives the eager prediction for any
number of rows; what a model's ``serving_inputs`` returns is checked in one line."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
import torch
from torch import nn

from deepseek.errors import UsageError
from deepseek.graph.export import load_exported, read_metadata
from deepseek.graph.serving import export_serving
from deepseek.models.capabilities import model_capabilities
from deepseek.models.protocol import TrainableModel


class Tabular(TrainableModel):
    """Numbers and a category per row, a label: logits over 3 classes."""

    def __init__(self) -> None:
        super().__init__()
        self.embed = nn.Embedding(5, 4)
        self.head = nn.Sequential(nn.Linear(6, 8), nn.GELU(), nn.Linear(8, 3))

    def logits(self, features: dict[str, torch.Tensor]) -> torch.Tensor:
        return self.head(torch.cat([features["numbers"], self.embed(features["category"])], -1))

    def forward(self, features: dict[str, torch.Tensor], label: torch.Tensor) -> torch.Tensor:
        return nn.functional.cross_entropy(self.logits(features), label)

    def serving_inputs(self, batch: dict[str, Any]) -> dict[str, Any]:
        return {"features": batch["features"]}

    def serving_forward(self, inputs: dict[str, Any]) -> torch.Tensor:
        return self.logits(inputs["features"])


def rows(n: int, seed: int) -> dict[str, Any]:
    g = torch.Generator().manual_seed(seed)
    return {"features": {"numbers": torch.randn(n, 2, generator=g), "category": torch.randint(0, 5, (n,), generator=g)},
            "label": torch.randint(0, 3, (n,), generator=g)}


def test_the_exported_file_predicts_like_the_model_for_any_rows(tmp_path: Path) -> None:
    model = Tabular().eval()
    assert "serving" in model_capabilities(model)
    path = export_serving(model, rows(4, 0), tmp_path / "tab.pt2", name="tabular")
    meta = read_metadata(path)
    assert [i["name"] for i in meta["serving"]["inputs"]] == ["features.numbers", "features.category"]
    assert meta["serving"]["rows"].startswith("dynamic")
    exported = load_exported(path)
    for n in (1, 9):
        batch = rows(n, n)
        with torch.no_grad():
            expected = model.serving_forward(model.serving_inputs(batch))
        assert torch.allclose(exported(model.serving_inputs(batch)), expected, atol=1e-6)


class Bad(Tabular):
    def __init__(self, returns: Any) -> None:
        super().__init__()
        self.returns = returns

    def serving_inputs(self, batch: dict[str, Any]) -> Any:
        return self.returns(batch)


@pytest.mark.parametrize(("returns", "message"), [
    (lambda b: b["features"]["numbers"], "serving_inputs returned Tensor; it must return the batch entries"),
    (lambda b: {}, "serving_inputs returned dict; it must return"),
    (lambda b: {"features": b["features"], "note": "x"}, "serving_inputs returned str among its entries; give tensors"),
    (lambda b: {"a": b["features"]["numbers"], "b": torch.zeros(2)}, "serving_inputs returned tensors with first dimensions [2, 4]"),
])
def test_what_serving_inputs_returns_is_checked_in_one_line(tmp_path: Path, returns: Any, message: str) -> None:
    with pytest.raises(UsageError) as info:
        export_serving(Bad(returns).eval(), rows(4, 0), tmp_path / "bad.pt2", name="acme.bad")
    assert "model 'acme.bad': " + message in str(info.value) and "\n" not in str(info.value)
    assert not list(tmp_path.iterdir())


class Returns(Tabular):
    def __init__(self, returns: Any) -> None:
        super().__init__()
        self.returns = returns

    def serving_forward(self, inputs: dict[str, Any]) -> Any:
        return self.returns(self.logits(inputs["features"]))


@pytest.mark.parametrize("fmt", ["pt2", "onnx"])
@pytest.mark.parametrize(("returns", "static", "message"), [
    (lambda y: (y, y), False, "model 'acme.bad': serving_forward returned tuple for 4 rows; it must return one tensor "
                              "with a row per input row"),
    (lambda y: {"logits": y}, True, "serving_forward returned dict for 4 rows"),
    (lambda y: y.mean(), False, "serving_forward returned a tensor of shape [] for 4 rows"),
    (lambda y: y.reshape(1, -1), True, "serving_forward returned a tensor of shape [1, 12] for 4 rows"),
    (lambda y: y.reshape(4, 3), False, "export: model 'acme.bad''s serving_forward fixes the number of rows to the "
                                       "example's 4, so its rows cannot stay dynamic; let it take any rows"),
])
def test_what_serving_forward_returns_is_checked_in_one_line(tmp_path: Path, returns: Any, static: bool, message: str,
                                                             fmt: str) -> None:
    """A prediction that is not one tensor of a row per input row, or that fixes the rows of a
    dynamic export (the ONNX exporter fixed them without a word), is one line; nothing is written."""
    if fmt == "onnx":
        pytest.importorskip("onnxscript")
    with pytest.raises(UsageError) as info:
        export_serving(Returns(returns).eval(), rows(4, 0), tmp_path / f"bad.{fmt}", name="acme.bad", fmt=fmt,
                       static=static)
    assert message in str(info.value) and "\n" not in str(info.value)
    assert not list(tmp_path.iterdir())


def test_an_example_over_the_rows_bound_is_one_line(tmp_path: Path) -> None:
    with pytest.raises(UsageError) as info:
        export_serving(Tabular().eval(), rows(4097, 0), tmp_path / "x.pt2")
    assert "the example batch holds 4097 rows; a dynamic export takes at most 4096" in str(info.value)
    assert "\n" not in str(info.value) and not list(tmp_path.iterdir())


def test_a_model_without_serving_and_a_one_row_example_are_refused(tmp_path: Path) -> None:
    with pytest.raises(UsageError, match=r"model 'plain' \(Linear\) does not offer capability 'serving'"):
        export_serving(nn.Linear(2, 2), rows(4, 0), tmp_path / "x.pt2", name="plain")
    with pytest.raises(UsageError, match="the example batch holds 1 row; a dynamic export traces at least 2"):
        export_serving(Tabular().eval(), rows(1, 0), tmp_path / "x.pt2")
    path = export_serving(Tabular().eval(), rows(1, 0), tmp_path / "one.pt2", static=True)  # a fixed shape is fine
    assert read_metadata(path)["serving"]["rows"] == "fixed"
    assert [p.name for p in tmp_path.iterdir()] == ["one.pt2"]


def test_an_onnx_export_takes_the_same_mapping(tmp_path: Path) -> None:
    """Runs where the ONNX packages are (tests-ecosystem: core's onnx extra and onnxruntime)."""
    onnx = pytest.importorskip("onnx")
    pytest.importorskip("onnxscript")
    pytest.importorskip("onnxruntime")
    model = Tabular().eval()
    path = export_serving(model, rows(4, 0), tmp_path / "tab.onnx", fmt="onnx")
    onnx.checker.check_model(str(path))
    assert [i.name for i in onnx.load(str(path)).graph.input] == ["features.numbers", "features.category"]
    batch = rows(7, 3)
    with torch.no_grad():
        expected = model.serving_forward(model.serving_inputs(batch))
    runner = load_exported(path)
    torch.testing.assert_close(runner(model.serving_inputs(batch)), expected, rtol=1e-5, atol=1e-5)
    # the mapping is fed by its names: another order of its keys gives the same prediction
    features = batch["features"]
    swapped = {"features": {"category": features["category"], "numbers": features["numbers"]}}
    torch.testing.assert_close(runner(swapped), expected, rtol=1e-5, atol=1e-5)
    with pytest.raises(UsageError) as info:  # an input the file does not take: one line naming both
        runner({"features": {**features, "extra": torch.zeros(7)}})
    assert "takes the inputs features.numbers, features.category; it was given features.numbers, " \
        "features.category, features.extra" in str(info.value) and "\n" not in str(info.value)


class TwoPlanes(TrainableModel):
    """Two float inputs of one shape: fed in the wrong order, an ONNX file would predict silently wrong."""

    def __init__(self) -> None:
        super().__init__()
        self.head = nn.Linear(4, 2)

    def forward(self, left: torch.Tensor, right: torch.Tensor, label: torch.Tensor) -> torch.Tensor:
        return nn.functional.cross_entropy(self.head(torch.cat([left, 2 * right], -1)), label)

    def serving_inputs(self, batch: dict[str, Any]) -> dict[str, Any]:
        return {"left": batch["left"], "right": batch["right"]}

    def serving_forward(self, inputs: dict[str, Any]) -> torch.Tensor:
        return self.head(torch.cat([inputs["left"], 2 * inputs["right"]], -1))


def test_an_onnx_file_feeds_inputs_of_one_shape_by_name(tmp_path: Path) -> None:
    pytest.importorskip("onnx")
    pytest.importorskip("onnxscript")
    pytest.importorskip("onnxruntime")
    model = TwoPlanes().eval()
    g = torch.Generator().manual_seed(0)
    left, right = torch.randn(5, 2, generator=g), torch.randn(5, 2, generator=g)
    path = export_serving(model, {"left": left[:3], "right": right[:3]}, tmp_path / "two.onnx", fmt="onnx")
    with torch.no_grad():
        expected = model.serving_forward({"left": left, "right": right})
    got = load_exported(path)({"right": right, "left": left})  # the keys in another order than traced
    torch.testing.assert_close(got, expected, rtol=1e-5, atol=1e-5)


def test_a_refused_export_removes_the_folders_it_made(tmp_path: Path) -> None:
    """deepseek export makes --out's missing folders through folders_made: a refusal inside removes
    them again (an empty one only: a file someone put there keeps its folder)."""
    from deepseek.paths import check_output, folders_made
    from deepseek.plugins.host import get_host

    target = tmp_path / "a" / "b" / "x.pt2"
    missing = check_output(target, where="--out", folder=False, file_name="model.pt2", host=get_host())
    assert missing == [tmp_path / "a", tmp_path / "a" / "b"]
    with pytest.raises(UsageError, match="serving_forward returned tuple"), folders_made(missing, where="--out"):
        export_serving(Returns(lambda y: (y, y)).eval(), rows(4, 0), target, name="acme.bad")
    assert not list(tmp_path.iterdir())
    with pytest.raises(UsageError), folders_made(missing, where="--out"):
        (tmp_path / "a" / "note.txt").write_text("mine")
        export_serving(Returns(lambda y: (y, y)).eval(), rows(4, 0), target, name="acme.bad")
    assert [p.name for p in (tmp_path / "a").iterdir()] == ["note.txt"]


class Branching(Tabular):
    """A prediction that branches on the data: code torch.export cannot trace."""

    def serving_forward(self, inputs: dict[str, Any]) -> torch.Tensor:
        logits = self.logits(inputs["features"])
        return logits if bool(logits.sum() > 0) else -logits


def test_code_torch_export_cannot_trace_is_one_line_naming_where(tmp_path: Path) -> None:
    """It was 'internal error: <torch.export's exception>' (exit code 1, no word of where): a
    plugin encoder over packed sequences inside multimodal.classifier, or this branch. The line
    names the model, the error and the innermost frame of the model's own code; nothing is written."""
    from deepseek.errors import DeepseekError

    with pytest.raises(DeepseekError) as info:
        export_serving(Branching().eval(), rows(4, 0), tmp_path / "branch.pt2", name="acme.branch")
    line = str(info.value)
    assert line.startswith("export: model 'acme.branch': torch.export could not trace its serving_forward: ")
    assert f"(in {__file__}, line " in line and "(serving_forward)); everything serving_forward calls" in line
    assert "\n" not in line and not isinstance(info.value, UsageError)
    assert not (tmp_path / "branch.pt2").exists() and list(tmp_path.iterdir()) == []


class MaxPooled(Tabular):
    """A prediction through ``adaptive_max_pool2d``, which torch.export traces and the ONNX exporter
    (torch 2.11) has no function for."""

    def serving_forward(self, inputs: dict[str, Any]) -> torch.Tensor:
        logits = self.logits(inputs["features"])
        return nn.functional.adaptive_max_pool2d(logits[:, None, :, None], (3, 1))[:, 0, :, 0]


def test_an_op_onnx_cannot_convert_is_named_not_blamed_on_tracing(tmp_path: Path) -> None:
    """It read 'torch.export could not trace its serving_forward: ConversionError: Failed to convert
    the exported program to an ONNX model. ... Next steps: ...' (cut at 300 characters, the op
    unnamed) for a model that traced and exports as .pt2 (found with an outside CNN plugin)."""
    pytest.importorskip("onnx")
    pytest.importorskip("onnxscript")
    from deepseek.errors import DeepseekError

    with pytest.raises(DeepseekError) as info:
        export_serving(MaxPooled().eval(), rows(4, 0), tmp_path / "pooled.onnx", fmt="onnx", name="acme.pooled")
    assert str(info.value) == (
        "export: model 'acme.pooled': torch.export traced its serving_forward, but the ONNX exporter cannot convert "
        "the program: no ONNX function for aten.adaptive_max_pool2d.default; write that part of the model with other "
        "ops, or export a .pt2 file (fmt='pt2'), which runs it; its __cause__ holds the traceback")
    assert list(tmp_path.iterdir()) == []
    assert export_serving(MaxPooled().eval(), rows(4, 0), tmp_path / "pooled.pt2", name="acme.pooled").is_file()


def test_an_onnx_export_does_not_print_the_exporters_skipped_torchvision_ops(tmp_path: Path) -> None:
    """Where torchvision is not installed (tests-ecosystem), every ONNX export printed four
    'W... torchvision is not installed. Skipping torchvision::nms' lines on stderr before its own."""
    import importlib.util
    import subprocess
    import sys

    pytest.importorskip("onnx")
    pytest.importorskip("onnxscript")
    if importlib.util.find_spec("torchvision") is not None:
        pytest.skip("torchvision is installed: the ONNX exporter skips none of its ops")
    code = ("import torch; from deepseek.graph.export import export_model; "
            f"export_model(torch.nn.Linear(4, 2).eval(), (torch.randn(2, 4),), {str(tmp_path / 'l.onnx')!r}, fmt='onnx')")
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr[-2000:]
    assert (tmp_path / "l.onnx").is_file() and "torchvision" not in done.stderr


class NoServing(TrainableModel):
    """A classifier over a batch of features without capability ``serving``."""

    def __init__(self) -> None:
        super().__init__()
        self.head = nn.Linear(2, 3)

    def forward(self, features: dict[str, torch.Tensor], label: torch.Tensor) -> torch.Tensor:
        return nn.functional.cross_entropy(self.head(features["numbers"]), label)


def test_optimize_refuses_a_model_without_token_ids_or_serving_naming_what_to_declare() -> None:
    from deepseek.graph.export_trained import example_tokens

    with pytest.raises(UsageError) as info:
        example_tokens(NoServing(), 1, None, "cpu", name="acme.noserve", command="optimize")
    line = str(info.value)
    assert line.startswith("optimize: model 'acme.noserve' takes forward(features, label), not one tensor of token "
                           "ids") and "\n" not in line, line
    assert line.endswith("a model over a batch of inputs is optimized on its run's own inputs through its capability "
                         "'serving' (serving_inputs and serving_forward: what a prediction reads and returns), which it "
                         "does not offer (docs/plugins.md, 'Models')"), line


def test_a_serving_model_is_optimized_on_its_inputs_with_a_signature_of_their_shapes() -> None:
    """deepseek.optimize takes serving_forward on a mapping of inputs (what ``deepseek optimize``
    runs for such a model); the plan's signature and cache key are the inputs' shapes, not their
    values, so the same shapes with other values are the same signature."""
    import deepseek
    from deepseek.graph.serving import ServingModule, serving_inputs
    from deepseek.graph.verify import signature_of

    model = Tabular().eval()
    inputs = serving_inputs(model, rows(4, 0), name="tabular")
    optimized = deepseek.optimize(ServingModule(model), (inputs,), "none", cache=False)
    with torch.no_grad():
        torch.testing.assert_close(optimized(inputs), model.serving_forward(inputs))
    assert signature_of((inputs,)) == (("M", (("features", ("M", (
        ("numbers", ("T", (4, 2), "torch.float32", "cpu")), ("category", ("T", (4,), "torch.int64", "cpu"))))),)),)
    assert signature_of((serving_inputs(model, rows(4, 1), name="tabular"),)) == signature_of((inputs,))
    assert signature_of((torch.zeros(2, 3), 5)) == (("T", (2, 3), "torch.float32", "cpu"), ("V", "5"))
