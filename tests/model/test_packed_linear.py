"""Linear layers through oneDNN with packed weights: the same function as ``nn.Linear``, up to float32 rounding."""

from __future__ import annotations

import copy
import gc

import pytest
import torch
from torch import nn

from tasks.model import packed_linear
from tasks.model.packed_linear import PackedLinear, pack_linears, packed_weight

pytestmark = pytest.mark.skipif(not packed_linear.available(), reason="this torch build has no oneDNN linear product")


def assert_equal_to_rounding(ours: torch.Tensor, theirs: torch.Tensor) -> None:
    """Equal up to float32 products summed in another order."""
    torch.testing.assert_close(ours, theirs, rtol=1e-5, atol=1e-6)


def packed_pair(bias: bool = True, seed: int = 0) -> tuple[nn.Linear, nn.Linear]:
    """A ``PackedLinear`` and an ``nn.Linear`` with the same weights."""
    torch.manual_seed(seed)
    plain = nn.Linear(48, 24, bias=bias)
    packed = copy.deepcopy(plain)
    assert pack_linears(packed) == 1
    return packed, plain


@pytest.mark.parametrize("bias", [True, False])
@pytest.mark.parametrize("shape", [(7, 48), (3, 5, 48), (1, 48), (0, 48)])
def test_a_packed_layer_computes_what_nn_linear_computes(shape, bias):
    packed, plain = packed_pair(bias)
    x = torch.randn(shape)
    with torch.inference_mode():
        assert_equal_to_rounding(packed(x), plain(x))
    assert isinstance(packed, PackedLinear)
    assert packed_weight(packed.weight) is packed_weight(packed.weight)  # packed once, then reused


def test_a_strided_input_is_multiplied_as_it_reads():
    packed, plain = packed_pair()
    x = torch.randn(5, 3, 48).transpose(0, 1)
    assert_equal_to_rounding(packed(x), plain(x))


def test_input_gradients_match_nn_linears():
    packed, plain = packed_pair()
    packed.requires_grad_(False)
    plain.requires_grad_(False)
    x = torch.randn(4, 6, 48, requires_grad=True)
    weights = torch.randn(4, 6, 24)
    (ours,) = torch.autograd.grad((packed(x) * weights).sum(), [x])
    (theirs,) = torch.autograd.grad((plain(x) * weights).sum(), [x])
    assert_equal_to_rounding(ours, theirs)
    assert ours.abs().max() > 0.1


def test_weight_and_bias_gradients_are_computed_where_the_weights_require_them():
    packed, plain = packed_pair()
    x = torch.randn(4, 6, 48)
    (packed(x) ** 2).sum().backward()
    (plain(x) ** 2).sum().backward()
    assert packed.weight.grad is not None and packed.bias.grad is not None
    assert plain.weight.grad is not None and plain.bias.grad is not None
    torch.testing.assert_close(packed.weight.grad, plain.weight.grad, rtol=1e-5, atol=1e-5)
    torch.testing.assert_close(packed.bias.grad, plain.bias.grad, rtol=1e-5, atol=1e-5)


def test_a_second_derivative_is_refused_rather_than_wrong():
    packed, _ = packed_pair()
    x = torch.randn(3, 48, requires_grad=True)
    (first,) = torch.autograd.grad(packed(x).square().sum(), [x], create_graph=True)
    with pytest.raises(RuntimeError):
        torch.autograd.grad(first.sum(), [x])


def test_a_weight_changed_in_place_is_packed_again():
    packed, plain = packed_pair()
    x = torch.randn(5, 48)
    before = packed(x).detach()
    replacement = torch.randn(24, 48)
    with torch.no_grad():
        for layer in (packed, plain):
            layer.weight.copy_(replacement)
    after = packed(x).detach()
    assert not torch.allclose(before, after)
    assert_equal_to_rounding(after, plain(x).detach())


def test_a_deep_copy_is_packed_on_its_own():
    """The sanity check re-initialises a deep copy of the model: the original must not follow it."""
    packed, plain = packed_pair()
    x = torch.randn(5, 48)
    packed(x)
    duplicate = copy.deepcopy(packed)
    assert isinstance(duplicate, PackedLinear)
    with torch.no_grad():
        nn.init.zeros_(duplicate.weight)
        nn.init.zeros_(duplicate.bias)
    assert duplicate(x).abs().max() == 0
    assert_equal_to_rounding(packed(x), plain(x))


def test_a_model_whose_linear_weights_exceed_the_limit_keeps_nn_linear():
    """Packing adds a copy of every weight: a large model is left as it is."""
    model = nn.Sequential(nn.Linear(48, 24), nn.ReLU(), nn.Linear(24, 8))
    weight_bytes = (48 * 24 + 24 * 8) * 4
    assert pack_linears(model, limit_bytes=weight_bytes - 1) == 0
    assert all(type(module) is not PackedLinear for module in model)
    assert pack_linears(model, limit_bytes=weight_bytes) == 2


def test_other_precisions_use_nn_linear_unchanged():
    packed, plain = packed_pair()
    packed.double()
    plain.double()
    x = torch.randn(5, 48, dtype=torch.float64)
    assert torch.equal(packed(x), plain(x))


def test_the_packed_copy_goes_with_its_weight():
    packed, _ = packed_pair()
    packed(torch.randn(2, 48))
    key = (id(packed.weight), False)
    assert key in packed_linear._packed
    del packed
    gc.collect()
    assert key not in packed_linear._packed


def test_the_audited_model_runs_packed_and_frozen(tiny_bundle, tiny_model_dir):
    from transformers import AutoModelForSequenceClassification

    model = tiny_bundle.model
    linears = [module for module in model.modules() if isinstance(module, nn.Linear)]
    assert linears and all(type(module) is PackedLinear for module in linears)
    assert not any(parameter.requires_grad for parameter in model.parameters())
    plain = AutoModelForSequenceClassification.from_pretrained(tiny_model_dir, attn_implementation="eager").eval()
    ids = tiny_bundle.tokenizer(["a quiet, moving film", "dull"], padding=True, return_tensors="pt")
    with torch.inference_mode():
        assert_equal_to_rounding(model(**ids).logits, plain(**ids).logits)
