"""Loading the model under audit: safety defaults and clear refusals."""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest
import torch
from safetensors.torch import load_file

from tasks.config import ModelSpec
from tasks.errors import AuditError
from tasks.model.adapters import adapter_for
from tasks.model.loading import load_model, weights_fingerprint
from tests.conftest import save_tiny_classifier


def test_the_bundle_exposes_labels_family_and_a_weights_fingerprint(tiny_bundle, tiny_model_dir):
    assert tiny_bundle.labels == ("class_0", "class_1", "class_2")
    assert tiny_bundle.adapter.family == "BERT"
    assert (tiny_bundle.num_layers, tiny_bundle.num_heads) == (2, 4)
    assert tiny_bundle.fingerprint == weights_fingerprint(str(tiny_model_dir), ModelSpec())
    assert not tiny_bundle.model.training
    assert tiny_bundle.model.config._attn_implementation == "attention_audit"


def test_different_weights_have_different_fingerprints(tmp_path):
    first = save_tiny_classifier(tmp_path / "a", seed=1)
    second = save_tiny_classifier(tmp_path / "b", seed=2)
    assert weights_fingerprint(str(first), ModelSpec()) != weights_fingerprint(str(second), ModelSpec())


def test_pickle_weights_load_only_when_allowed(tmp_path, tiny_model_dir):
    folder = tmp_path / "pickled"
    shutil.copytree(tiny_model_dir, folder)
    torch.save(load_file(folder / "model.safetensors"), folder / "pytorch_model.bin")
    (folder / "model.safetensors").unlink()
    with pytest.raises(AuditError, match="no safetensors weights") as refused:
        load_model(ModelSpec(name_or_path=str(folder)))
    assert "--allow-pickle" in refused.value.fix
    bundle = load_model(ModelSpec(name_or_path=str(folder), allow_pickle=True))
    assert bundle.labels == ("class_0", "class_1", "class_2")


def test_a_checkpoint_without_a_trained_head_is_refused(tmp_path, tiny_model_dir):
    from transformers import AutoTokenizer, BertConfig, BertModel

    folder = tmp_path / "base"
    BertModel(
        BertConfig(vocab_size=30522, hidden_size=16, num_hidden_layers=1, num_attention_heads=2, intermediate_size=16)
    ).save_pretrained(folder)
    AutoTokenizer.from_pretrained(tiny_model_dir).save_pretrained(folder)
    with pytest.raises(AuditError, match="not a trained sequence classifier"):
        load_model(ModelSpec(name_or_path=str(folder)))


def test_a_model_folder_without_a_tokenizer_is_refused(tmp_path, tiny_model_dir):
    folder = tmp_path / "no-tokenizer"
    folder.mkdir()
    for name in ("config.json", "model.safetensors"):
        shutil.copy(Path(tiny_model_dir) / name, folder / name)
    with pytest.raises(AuditError, match="tokenizer is missing or belongs to another model"):
        load_model(ModelSpec(name_or_path=str(folder)))


def test_a_missing_model_names_where_it_looked():
    with pytest.raises(AuditError, match="neither a preset"):
        load_model(ModelSpec(name_or_path="/no/such/model/folder-or-hub-id"))


def test_an_unsupported_family_is_refused_with_the_supported_ones_listed():
    with pytest.raises(AuditError, match="no adapter for model type 't5'") as refused:
        adapter_for("t5")
    assert "bert" in refused.value.fix


def test_classification_positions_follow_the_family():
    mask = torch.tensor([[1, 1, 1, 0], [1, 1, 1, 1]])
    assert adapter_for("bert").classification_positions(mask).tolist() == [0, 0]
    assert adapter_for("gpt2").classification_positions(mask).tolist() == [2, 3]


def test_a_model_that_returns_no_attention_weights_is_refused(tiny_bundle):
    from types import SimpleNamespace

    from tasks.model.loading import _check_returns_attentions

    class Silent(torch.nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.weight = torch.nn.Parameter(torch.zeros(1))

        def forward(self, **inputs):
            return SimpleNamespace(logits=torch.zeros(1, 2), attentions=None)

    with pytest.raises(AuditError, match="returns no attention weights"):
        _check_returns_attentions(Silent(), tiny_bundle.tokenizer, ModelSpec(name_or_path="silent"))


def test_half_precision_on_cpu_is_refused_with_the_fix(tiny_model_dir):
    with pytest.raises(AuditError, match="--precision float16 needs a GPU") as error:
        load_model(ModelSpec(name_or_path=str(tiny_model_dir), precision="float16"))
    assert "--device cuda" in error.value.fix


@pytest.mark.gpu
@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device")
@pytest.mark.parametrize("precision", ["float32", "float16"])
def test_the_gpu_ranks_tokens_as_the_cpu_does(tiny_model_dir, precision):
    """Each method's rankings on the GPU against the CPU's: mean Kendall τ ≥ 0.99 in float32, ≥ 0.9 in float16."""
    from tasks.config import MethodOptions
    from tasks.evaluate.agreement import kendall_tau
    from tasks.explain.passes import BatchContext
    from tasks.explain.registry import METHODS
    from tests.conftest import TEXTS, encode

    cpu = load_model(ModelSpec(name_or_path=str(tiny_model_dir)))
    gpu = load_model(ModelSpec(name_or_path=str(tiny_model_dir), device="cuda", precision=precision))
    examples = encode(cpu, TEXTS)
    floor = 0.99 if precision == "float32" else 0.9
    for name in ("attention_last", "rollout", "saliency", "integrated_gradients", "leave_one_out"):
        ours = [METHODS[name].compute(BatchContext(b, examples, need_gradients=True), MethodOptions())
                for b in (cpu, gpu)]  # fmt: skip
        taus = [kendall_tau(a.content_scores, b.content_scores) for a, b in zip(*ours, strict=True)]
        assert sum(taus) / len(taus) >= floor, (name, taus)
