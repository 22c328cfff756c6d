"""LoRALinear on its own: the forward formula, dropout position, dtypes, init, DoRA, the fused path, merging."""

from __future__ import annotations

import contextlib
import math
from collections.abc import Callable

import pytest
import torch
import torch.nn.functional as F
from peft_test_helpers import lm_loss, logits, perturb_adapters, tiny_qwen2, token_ids
from torch import nn
from torch.utils._python_dispatch import TorchDispatchMode

from automodel.peft import LoRAConfig, LoRALinear, PeftError, apply_lora

IN, OUT, RANK = 24, 40, 4


def make_layer(seed: int = 0, base_dtype: torch.dtype = torch.float32, **kwargs: object) -> LoRALinear:
    """A LoRALinear over a fresh frozen nn.Linear(IN, OUT) with bias, its B (and magnitude) set to random values."""
    torch.manual_seed(seed)
    base = nn.Linear(IN, OUT).to(base_dtype).requires_grad_(False)
    layer = LoRALinear(base, LoRAConfig(**{"dim": RANK, "alpha": 8, "match_all_linear": True, **kwargs}))
    with torch.no_grad():
        layer.lora_B.weight.normal_(0, 0.5)
        if layer.use_dora:
            layer.lora_magnitude_vector.mul_(torch.rand(OUT) + 0.5)
    return layer


def inputs(seed: int = 1, dtype: torch.dtype = torch.float32) -> torch.Tensor:
    """A (2, 5, IN) batch."""
    return torch.randn(2, 5, IN, generator=torch.Generator().manual_seed(seed)).to(dtype)


def identity(tensor: torch.Tensor) -> torch.Tensor:
    """No dropout."""
    return tensor


def reference(
    layer: LoRALinear,
    x: torch.Tensor,
    pre: Callable[[torch.Tensor], torch.Tensor] = identity,
    post: Callable[[torch.Tensor], torch.Tensor] = identity,
) -> torch.Tensor:
    """The layer's output written out with a dense B @ A: base(x) + post(scale * (B A) pre(x)), or DoRA's formula."""
    A, B = layer.lora_A.weight.float(), layer.lora_B.weight.float()
    lora_input = pre(x.float())
    update = post(lora_input @ (B @ A).t() * layer.scale)
    base = layer.base_layer(x).float()
    if not layer.use_dora:
        return base + update
    weight = layer.base_layer.weight.float()
    gain = layer.lora_magnitude_vector / torch.linalg.norm(weight + layer.scale * B @ A, dim=1)
    return base + (gain - 1) * (lora_input @ weight.t()) + gain * update


@pytest.mark.parametrize("use_rslora, scale", [(False, 8 / RANK), (True, 8 / math.sqrt(RANK))], ids=["lora", "rslora"])
@pytest.mark.parametrize("use_dora", [False, True], ids=["", "dora"])
def test_forward_adds_the_scaled_low_rank_update_to_the_base_output(
    use_rslora: bool, scale: float, use_dora: bool
) -> None:
    layer = make_layer(use_rslora=use_rslora, use_dora=use_dora).eval()
    x = inputs()
    assert layer.scale == pytest.approx(scale)
    torch.testing.assert_close(layer(x), reference(layer, x), atol=1e-5, rtol=1e-5)
    assert not torch.allclose(layer(x), layer.base_layer(x), atol=1e-3)


class ShapeRecorder(TorchDispatchMode):
    """Records the shape of every new tensor an operator produces (views of existing ones are not recorded)."""

    def __init__(self) -> None:
        super().__init__()
        self.shapes: set[tuple[int, ...]] = set()

    def __torch_dispatch__(self, func, types, args=(), kwargs=None):
        out = func(*args, **(kwargs or {}))
        outputs = out if isinstance(out, tuple | list) else [out]
        for tensor in outputs:
            if isinstance(tensor, torch.Tensor) and not func.is_view:
                self.shapes.add(tuple(tensor.shape))
        return out


@pytest.mark.parametrize("use_dora", [False, True], ids=["lora", "dora"])
def test_forward_and_backward_never_build_the_dense_update(use_dora: bool) -> None:
    layer = make_layer(use_dora=use_dora).train()
    with ShapeRecorder() as recorder:
        layer(inputs()).sum().backward()
    assert (OUT, IN) not in recorder.shapes and (IN, OUT) not in recorder.shapes
    assert (RANK, IN) in recorder.shapes  # the gradient of A
    assert layer.base_layer.weight.grad is None


@pytest.mark.parametrize("use_dora", [False, True], ids=["lora", "dora"])
@pytest.mark.parametrize("position", ["pre", "post"])
def test_dropout_applies_to_the_lora_input_or_output_and_only_in_training(use_dora: bool, position: str) -> None:
    layer = make_layer(dropout=0.5, dropout_position=position, use_dora=use_dora).train()
    x = inputs()
    torch.manual_seed(7)
    out = layer(x)
    torch.manual_seed(7)
    drop = {position: lambda tensor: F.dropout(tensor, 0.5)}
    torch.testing.assert_close(out, reference(layer, x, **drop), atol=1e-5, rtol=1e-5)
    assert not torch.allclose(out, reference(layer, x), atol=1e-3)
    layer.eval()
    torch.testing.assert_close(layer(x), reference(layer, x), atol=1e-5, rtol=1e-5)


DTYPE_CASES = {
    "fp32 base, adapters follow": (torch.float32, None, torch.float32),
    "bf16 base, adapters follow": (torch.bfloat16, None, torch.bfloat16),
    "fp32 base, bf16 adapters": (torch.float32, "bf16", torch.bfloat16),
    "bf16 base, fp32 adapters": (torch.bfloat16, "float32", torch.float32),
}


@pytest.mark.parametrize("use_dora", [False, True], ids=["lora", "dora"])
@pytest.mark.parametrize("base_dtype, lora_dtype, adapter_dtype", DTYPE_CASES.values(), ids=DTYPE_CASES.keys())
def test_lora_dtype_sets_the_adapter_dtype_and_the_output_keeps_the_base_dtype(
    base_dtype: torch.dtype, lora_dtype: str | None, adapter_dtype: torch.dtype, use_dora: bool
) -> None:
    layer = make_layer(base_dtype=base_dtype, lora_dtype=lora_dtype, use_dora=use_dora).eval()
    assert {p.dtype for n, p in layer.named_parameters() if "lora" in n} == {adapter_dtype}
    x = inputs(dtype=base_dtype)
    out = layer(x)
    assert out.dtype == base_dtype
    tolerance = 1e-5 if base_dtype == adapter_dtype == torch.float32 else 5e-2
    torch.testing.assert_close(out.float(), reference(layer, x), atol=tolerance, rtol=tolerance)


def test_inits_start_as_a_no_op_with_peft_kaiming_or_gaussian_a_or_all_zeros() -> None:
    torch.manual_seed(0)
    base = nn.Linear(256, 64)
    kaiming, gaussian, zeros = (
        LoRALinear(base, LoRAConfig(dim=16, match_all_linear=True, init=init))
        for init in ("kaiming", "gaussian", "zeros")
    )
    bound = 1 / math.sqrt(256)  # kaiming_uniform with a=sqrt(5) on fan_in 256, as peft initialises A
    assert kaiming.lora_A.weight.abs().max() <= bound
    assert kaiming.lora_A.weight.abs().max() > 0.9 * bound
    assert gaussian.lora_A.weight.std().item() == pytest.approx(1 / 16, rel=0.1)
    assert not zeros.lora_A.weight.any()
    x = torch.randn(3, 256)
    for layer in (kaiming, gaussian, zeros):
        assert not layer.lora_B.weight.any()
        torch.testing.assert_close(layer(x), base(x))


def test_dora_magnitude_starts_at_the_row_norms_of_the_base_weight() -> None:
    torch.manual_seed(0)
    base = nn.Linear(IN, OUT)
    layer = LoRALinear(base, LoRAConfig(dim=RANK, use_dora=True, match_all_linear=True))
    torch.testing.assert_close(layer.lora_magnitude_vector.detach(), torch.linalg.norm(base.weight, dim=1))
    x = inputs()
    torch.testing.assert_close(layer(x), base(x))


@pytest.mark.parametrize("use_dora", [False, True], ids=["lora", "dora"])
def test_the_fused_branch_gives_the_same_outputs_and_gradients_for_every_layer_shape(use_dora: bool) -> None:
    models = []
    for fused in (False, True):
        config = LoRAConfig(r=4, match_all_linear=True, use_dora=use_dora, fused=fused, compile_backend="aot_eager")
        models.append(apply_lora(tiny_qwen2(), config))
        perturb_adapters(models[-1])
    eager, fused = models
    for length in (9, 16):  # four Linear shapes, with and without bias, two sequence lengths
        ids = token_ids(length=length)
        for model in models:
            model.train()
            lm_loss(model, ids).backward()
        torch.testing.assert_close(logits(fused, ids), logits(eager, ids), atol=1e-5, rtol=1e-5)
    for name, parameter in eager.named_parameters():
        if parameter.requires_grad:
            torch.testing.assert_close(fused.get_parameter(name).grad, parameter.grad, atol=1e-5, rtol=1e-5)


@pytest.mark.parametrize("switch", ["TORCHDYNAMO_DISABLE", "TORCH_COMPILE_DISABLE"])
def test_fused_with_torch_compile_disabled_is_an_error_not_a_silent_eager_run(
    switch: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    if switch == "TORCHDYNAMO_DISABLE":
        monkeypatch.setenv(switch, "1")  # read by torch.compile itself
        disabled = contextlib.nullcontext()
    else:
        disabled = torch._dynamo.config.patch(disable=True)  # what the variable sets when torch is imported
    model = tiny_qwen2()
    with disabled, pytest.raises(PeftError, match=r"torch\.compile is disabled here"):
        apply_lora(model, LoRAConfig(target_modules=["q_proj"], fused=True))
    assert all(p.requires_grad for p in model.parameters())  # the model was left as it was


def test_fused_with_an_unknown_compile_backend_is_an_error() -> None:
    with pytest.raises(PeftError, match=r"compile_backend 'tensorrt-x' is not a torch\.compile backend"):
        make_layer(fused=True, compile_backend="tensorrt-x")


def test_fused_when_the_compiler_fails_is_a_peft_error() -> None:
    def no_compiler(graph: torch.fx.GraphModule, example_inputs: list) -> Callable:
        raise RuntimeError("no working C++ compiler")  # what inductor reports on a machine without one

    if "automodel_test_no_compiler" not in torch.compiler.list_backends(exclude_tags=()):
        torch._dynamo.register_backend(no_compiler, name="automodel_test_no_compiler")
    layer = make_layer(fused=True, compile_backend="automodel_test_no_compiler").eval()
    message = r"could not compile the LoRA branch \(RuntimeError: no working C\+\+ compiler\)\. Set fused=False"
    with pytest.raises(PeftError, match=message):
        layer(inputs())


@pytest.mark.parametrize("use_dora", [False, True], ids=["lora", "dora"])
def test_merge_folds_the_adapter_into_the_weight_and_unmerge_restores_it(use_dora: bool) -> None:
    layer = make_layer(use_dora=use_dora).eval()
    x = inputs()
    adapted, weight = layer(x), layer.base_layer.weight.detach().clone()
    layer.merge()
    layer.merge()  # a second merge changes nothing
    assert layer.merged
    torch.testing.assert_close(layer.base_layer(x), adapted, atol=1e-5, rtol=1e-5)
    torch.testing.assert_close(layer(x), adapted, atol=1e-5, rtol=1e-5)
    layer.unmerge()
    layer.unmerge()
    torch.testing.assert_close(layer.base_layer.weight, weight, atol=1e-6, rtol=1e-6)
    torch.testing.assert_close(layer(x), adapted, atol=1e-5, rtol=1e-5)
