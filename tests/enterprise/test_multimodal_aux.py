"""Per-modality targets and the joint-prediction head: the complementary digits task gives every
modality its own label (image digit, spoken digit, operation), the classifier's auxiliary losses
use exactly those labels, the joint head has the documented shapes and marginalises a missing
modality, and a short run reads each modality's own content well above chance on validation."""

from __future__ import annotations

import math
from pathlib import Path

import pytest
import torch
import torch.nn.functional as F

from deepseek.config.load import config_from_dict
from deepseek.data.batch import shard_rows, split_rows
from deepseek.errors import ConfigError
from deepseek.models.factory import instantiate_model
from deepseek.plugins.host import get_host
from deepseek.training.trainer import Trainer
from deepseek_enterprise.digits.dataset import OPERATIONS, DigitsOptions, MultimodalDigits
from deepseek_enterprise.fusion import JointHead
from deepseek_enterprise.multimodal import MultimodalClassifier
from deepseek_enterprise.study_recipes import study_config
from deepseek_enterprise.study_report import table

TINY = {"fusion_options": {"d_model": 16, "hidden": 32, "joint": True}, "vision": {"embed_dim": 16, "depths": [1, 1]},
        "audio": {"d_model": 16, "n_heads": 2, "n_layers": 1},
        "text": {"d_model": 16, "n_heads": 2, "n_layers": 1, "max_seq_len": 24}}


pytestmark = pytest.mark.usefixtures("one_thread")


def test_complementary_samples_carry_each_modalitys_own_label() -> None:
    data = MultimodalDigits(DigitsOptions(task="complementary", eval_size=256), batch_size=64, seed=0)
    batch = data.split_batches("val")[0]
    own = batch["modality_labels"]
    a, b, op = own["vision"], own["audio"], own["text"]
    assert set(op.tolist()) == {0, 1} and a.min() >= 0 and a.max() <= 9 and b.min() >= 0 and b.max() <= 9
    assert torch.equal(batch["label"], torch.where(op == 0, (a + b) % 10, (a - b) % 10))
    # The text really names that operation: its bytes are one of that operation's spellings.
    names = list(OPERATIONS)
    for row, mask, o in zip(batch["text"]["inputs"], batch["text"]["padding_mask"], op.tolist(), strict=True):
        text = bytes(row[~mask].tolist()).decode("utf-8")
        assert text in OPERATIONS[names[o]][0]


def _model(options: dict) -> MultimodalClassifier:
    cls = get_host().resolve("model", "multimodal.classifier").load()
    return instantiate_model(cls, {**TINY, **options}, name="multimodal.classifier")


def test_the_aux_loss_is_each_modality_head_against_its_own_label() -> None:
    torch.manual_seed(0)
    data = MultimodalDigits(DigitsOptions(task="complementary", eval_size=64), batch_size=64, seed=0)
    batch = data.split_batches("val")[0]
    with_aux = _model({"fusion": "concat", "aux_loss_weight": 0.5})
    without = _model({"fusion": "concat", "aux_loss_weight": 0.0})
    without.load_state_dict(with_aux.state_dict())
    with_aux.train()
    without.train()
    with torch.no_grad():
        loss_aux, loss_plain = with_aux(**batch)["loss"], without(**batch)["loss"]
    out = with_aux.predict(batch)
    own = batch["modality_labels"]
    expected = torch.stack([F.cross_entropy(out.modality_logits[m], own[m]) for m in ("vision", "audio", "text")]).mean()
    torch.testing.assert_close(loss_aux - loss_plain, 0.5 * expected)
    # ... and not against the class (which the per-modality heads cannot know on this task).
    against_class = torch.stack([F.cross_entropy(out.modality_logits[m], batch["label"]) for m in own]).mean()
    assert abs(float(against_class - expected)) > 1e-3
    # A sample whose modality has no label of its own (-100) adds nothing for that modality.
    ignored = {**own, "text": torch.full_like(own["text"], -100)}
    with torch.no_grad():
        loss_ignored = with_aux(**{**batch, "modality_labels": ignored})["loss"]
    two = torch.stack([F.cross_entropy(out.modality_logits[m], own[m]) for m in ("vision", "audio")]).mean()
    torch.testing.assert_close(loss_ignored - loss_plain, 0.5 * (two * 2 + 0.0) / 3)


def _mixed(batch: dict) -> dict:
    """``batch`` (8 rows) with audio missing from some samples and no text label for others: the
    halves (``grad_accum = 2``) and the two ranks' shards each hold a different share of both."""
    audio = torch.tensor([1, 1, 1, 1, 0, 0, 1, 0], dtype=torch.bool)
    text = batch["modality_labels"]["text"].clone()
    text[[0, 3, 5]] = -100
    return {**batch, "present": {**batch["present"], "audio": audio},
            "modality_labels": {**batch["modality_labels"], "text": text}}


@pytest.mark.parametrize("fusion", ["concat", "cross_attention"])
def test_the_aux_loss_is_a_mean_over_rows_when_samples_differ_in_modalities(fusion: str) -> None:
    # The trainer combines micro-batches and ranks by their rows (docs/plugins.md section 10): the
    # loss of the whole batch must be the mean of its equal parts' losses, however it is split. The
    # auxiliary losses were means over the samples having the modality, so the parts' mean missed
    # the whole's (ddp against single: step-0 val_loss 3.494727 against 3.490170 in a reviewer's
    # run); now a row without the modality adds 0 to a mean over rows.
    torch.manual_seed(0)
    model = _model({"fusion": fusion, "aux_loss_weight": 0.5}).eval()
    data = MultimodalDigits(DigitsOptions(task="complementary", eval_size=8), batch_size=8, seed=0)
    batch = _mixed(data.split_batches("val")[0])
    with torch.no_grad():
        whole = model(**batch)["loss"]
        for parts in (split_rows(batch, 2), [shard_rows(batch, rank, 2) for rank in range(2)]):
            torch.testing.assert_close(torch.stack([model(**part)["loss"] for part in parts]).mean(), whole)
        out = model.predict(batch)
    own, rows = batch["modality_labels"], 8
    aux = []
    for m in ("vision", "audio", "text"):
        mask = batch["present"][m] & (own[m] != -100)
        per = F.cross_entropy(out.modality_logits[m], own[m].clamp_min(0), reduction="none")
        aux.append((per * mask).sum() / rows)
    torch.testing.assert_close(whole, F.cross_entropy(out.logits, batch["label"]) + 0.5 * torch.stack(aux).mean())


def test_the_aux_loss_with_every_modality_present_is_the_mean_over_those_samples() -> None:
    # unchanged where every sample has every modality and its label (the digits study's batches):
    # the mean over the samples having the modality, as before, is the mean over rows
    torch.manual_seed(0)
    model = _model({"fusion": "cross_attention", "aux_loss_weight": 0.5}).eval()
    data = MultimodalDigits(DigitsOptions(task="complementary", eval_size=8), batch_size=8, seed=0)
    batch = data.split_batches("val")[0]
    assert all(batch["present"][m].all() for m in ("vision", "audio", "text"))
    with torch.no_grad():
        loss = model(**batch)["loss"]
        out = model.predict(batch)
    own = batch["modality_labels"]
    before = []  # the former formula: (per * mask).sum() / mask.sum()
    for m in ("vision", "audio", "text"):
        mask = (batch["present"][m] & (own[m] != -100)).float()
        before.append((F.cross_entropy(out.modality_logits[m], own[m], reduction="none") * mask).sum() / mask.sum())
    torch.testing.assert_close(loss, F.cross_entropy(out.logits, batch["label"]) + 0.5 * torch.stack(before).mean(),
                               rtol=1e-6, atol=1e-6)


def test_under_modality_dropout_the_aux_loss_is_the_mean_over_the_rows_showing_the_modality() -> None:
    # the random draws make the split matter there anyway: the formula the study recipes (aux,
    # joint) were measured with is kept
    torch.manual_seed(0)
    model = _model({"fusion": "concat", "aux_loss_weight": 0.5, "modality_dropout": 0.4}).train()
    data = MultimodalDigits(DigitsOptions(task="complementary", eval_size=8), batch_size=8, seed=0)
    batch = data.split_batches("val")[0]
    drawn = {m: torch.tensor([1, 1, 0, 1, 1, 0, 1, 1], dtype=torch.bool).roll(i) for i, m in
             enumerate(("vision", "audio", "text"))}
    model.presence = lambda batch: drawn  # type: ignore[method-assign] # one draw, used by forward and predict
    with torch.no_grad():
        loss = model(**batch)["loss"]
        out = model.predict({**batch, "present": drawn})
    own = batch["modality_labels"]
    aux = []
    for m in ("vision", "audio", "text"):
        mask = drawn[m].float()
        per = F.cross_entropy(out.modality_logits[m], own[m], reduction="none")
        aux.append((per * mask).sum() / mask.sum())
    torch.testing.assert_close(loss, F.cross_entropy(out.logits, batch["label"]) + 0.5 * torch.stack(aux).mean())


def test_joint_head_shapes_start_and_missing_modality() -> None:
    torch.manual_seed(0)
    head = JointHead(["vision", "audio", "text"], 10)
    assert head.table.shape == (1000, 10)
    logits = {m: torch.randn(4, 10) for m in ("vision", "audio", "text")}
    present = {m: torch.ones(4, dtype=torch.bool) for m in logits}
    out = head(logits, present)
    assert out.shape == (4, 10)
    torch.testing.assert_close(out, torch.full((4, 10), -torch.log(torch.tensor(10.0))))  # zero table: uniform
    with torch.no_grad():
        head.table.normal_()
    gone = {**present, "audio": torch.tensor([True, False, True, False])}
    changed = {**logits, "audio": logits["audio"] + torch.randn(4, 10) * 5}
    a, b = head(logits, gone), head(changed, gone)
    torch.testing.assert_close(a[[1, 3]], b[[1, 3]])  # a missing modality is marginalised out
    assert not torch.allclose(a[[0, 2]], b[[0, 2]])
    # The exact value for one sample: sum over cells of p_v * p_a * p_t * softmax(table).
    p = [logits[m][0].softmax(-1) for m in ("vision", "audio", "text")]
    cells = torch.einsum("i,j,k->ijk", *p).reshape(-1)
    torch.testing.assert_close(a[0], (cells @ head.table.softmax(-1)).log())
    with pytest.raises(ConfigError, match=r"^model\.fusion_options\.joint: 3 modalities of 100 classes make a table "
                                          r"of 100,000,000 parameters \(limit 1,000,000\); set joint = false"):
        JointHead(["vision", "audio", "text"], 100)


@pytest.mark.parametrize("fusion", ["concat", "cross_attention"])
def test_joint_fusions_handle_missing_modalities(fusion: str) -> None:
    torch.manual_seed(0)
    model = _model({"fusion": fusion, "aux_loss_weight": 0.5}).eval()
    data = MultimodalDigits(DigitsOptions(task="complementary", eval_size=16, missing=("audio",)), batch_size=16, seed=0)
    batch = data.split_batches("val")[0]
    out = model.predict(batch)
    assert out.logits.shape == (16, 10) and torch.isfinite(out.logits).all()
    noisy = {**batch, "audio": {**batch["audio"], "inputs": batch["audio"]["inputs"] + 3.0}}
    torch.testing.assert_close(out.logits, model.predict(noisy).logits)


def test_short_complementary_run_reads_each_modality_above_chance(tmp_path: Path) -> None:
    config = study_config("complementary", "concat", 0, 160, batch=32, lr=3e-3, device="cpu", runs_dir=str(tmp_path))
    assert config["model"]["fusion_options"] == {"joint": True} and config["model"]["modality_dropout"] == 0.0
    config["data"].update(eval_size=256, eval_batches=8)
    config["train"]["eval_interval"] = 160
    result = Trainer(config_from_dict(config), run_dir=tmp_path / "run", quiet=True).fit()
    val = result.val_metrics
    # Each head against its own label (chance: 10% for the digits, 50% for the operation).
    assert val["val_accuracy_vision"] > 0.2 and val["val_accuracy_audio"] > 0.2
    assert val["val_accuracy_text"] > 0.95


def test_the_table_names_each_recipe_and_the_own_label_readings() -> None:
    def row(config: str, seed: int, acc: float, **extra: object) -> dict:
        test = {"test_accuracy": acc, "test_accuracy_vision": 0.5, "test_accuracy_audio": 0.8, "test_accuracy_text": 1.0}
        return {"task": "complementary", "config": config, "seed": seed, "parameters": 443230, "test": test,
                "missing": {"vision": 0.1, "audio": 0.1, "text": 0.1}, **extra}

    rows = [row("concat", 0, 0.25), row("concat", 1, 0.27),  # written before recipes existed: aux
            row("concat", 0, 0.37, recipe="joint"), row("concat", 1, 0.39, recipe="joint")]
    text = table(rows)
    assert "| concat (aux) | 0.44 M | 26.0 +- 1.4 | 10.0 +- 0.0 | 10.0 +- 0.0 | 10.0 +- 0.0 | 50.0 / 80.0 / 100.0 |" in text
    assert "| concat | 0.44 M | 38.0 +- 1.4 | " in text


@pytest.mark.parametrize("fusion", ["concat", "cross_attention"])
def test_every_parameter_gets_a_gradient_without_the_aux_loss(fusion: str) -> None:
    """At aux_loss_weight = 0 (the default) the modality classifiers (fusion.heads.*) fed only
    modality_logits, which nothing in the loss read: they got no gradient, and 'deepseek launch
    -n 2 -- train ... --strategy ddp' stopped at step 1 (DDP find_unused_parameters) for every
    fusion but late. The term stays in the graph at weight 0: every parameter gets a gradient
    and the loss is the fused cross-entropy, the same number as before."""
    torch.manual_seed(0)
    data = MultimodalDigits(DigitsOptions(eval_size=16), batch_size=16, seed=0)
    batch = data.split_batches("val")[0]
    # No joint head: it reads the modality classifiers, which then get a gradient through it.
    model = _model({"fusion": fusion, "aux_loss_weight": 0.0, "fusion_options": {"d_model": 16, "hidden": 32}}).train()
    loss = model(**batch)["loss"]
    loss.backward()
    assert [n for n, p in model.named_parameters() if p.requires_grad and p.grad is None] == []
    with torch.no_grad():
        fused = F.cross_entropy(model.predict(batch).logits, batch["label"])
    assert float(loss) == float(fused)


def test_recall_of_a_pair_no_sample_has_is_not_measured() -> None:
    """``argmax`` of the empty similarity matrix raised IndexError (a batch in which no sample
    had both modalities of a pair, e.g. ``data.missing`` with ``contrastive_weight``); such a pair
    is not measured: NaN, which the step record leaves out (it read 0.0)."""
    from deepseek_enterprise.alignment import retrieval_recall

    pooled = {m: torch.randn(4, 8) for m in ("vision", "audio", "text")}
    present = {"vision": torch.ones(4, dtype=torch.bool), "audio": torch.zeros(4, dtype=torch.bool),
               "text": torch.ones(4, dtype=torch.bool)}
    pooled["text"] = pooled["vision"].clone()  # each sample's text nearest its own image
    recall = {k: float(v) for k, v in retrieval_recall(pooled, present, ["vision", "audio", "text"]).items()}
    assert recall["recall_vision_text"] == 1.0
    assert math.isnan(recall["recall_vision_audio"]) and math.isnan(recall["recall_audio_text"])
