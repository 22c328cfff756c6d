"""resolve_torch_dtype: the spellings users write for a model's dtype."""

from __future__ import annotations

import pytest
import torch

from automodel.models import ModelError, resolve_torch_dtype


@pytest.mark.parametrize(
    ("spelling", "expected"),
    [
        ("bf16", torch.bfloat16),
        ("bfloat16", torch.bfloat16),
        ("fp16", torch.float16),
        ("float16", torch.float16),
        ("fp32", torch.float32),
        ("FLOAT32", torch.float32),
        ("torch.bfloat16", torch.bfloat16),
        (torch.float16, torch.float16),
    ],
)
def test_named_dtypes_resolve_to_torch_dtypes(spelling, expected):
    assert resolve_torch_dtype(spelling) == expected


def test_auto_is_bf16_with_cuda_and_fp32_without():
    expected = torch.bfloat16 if torch.cuda.is_available() else torch.float32
    assert resolve_torch_dtype("auto") == expected


def test_misspelled_dtype_suggests_the_closest_spelling():
    with pytest.raises(ModelError, match=r"torch_dtype 'bfloat61' is not supported; did you mean `bfloat16`\?"):
        resolve_torch_dtype("bfloat61")


@pytest.mark.parametrize("value", ["float64", 16, torch.int8, None])
def test_unsupported_dtypes_are_refused_listing_the_accepted_ones(value):
    with pytest.raises(ModelError, match=r"is not supported.*use one of auto, bf16, bfloat16, fp16"):
        resolve_torch_dtype(value)
