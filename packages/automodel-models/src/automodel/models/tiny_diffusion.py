"""A tiny Stable Diffusion 3 pipeline built offline: word-level tokenizer, small CLIP and T5 text encoders,
a small VAE and a small SD3 transformer, for tests and CPU examples."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import diffusers
import torch
from tokenizers import Tokenizer, models, pre_tokenizers, processors
from transformers import CLIPTextConfig, CLIPTextModelWithProjection, PreTrainedTokenizerFast, T5Config, T5EncoderModel

from automodel.models.auto_model import _seeded

SPECIAL_TOKENS = ("<pad>", "<|startoftext|>", "<|endoftext|>", "<unk>")
TEXT_WIDTH = 32  # each CLIP's width; the two together (64) are the T5 width and the transformer's joint width


def tiny_sd3_transformer_config(*, latent_size: int = 16, **overrides: Any) -> dict[str, Any]:
    """The config of a ~0.3M-parameter SD3 transformer over ``latent_size`` square 4-channel latents."""
    return {
        "sample_size": latent_size,
        "patch_size": 2,
        "in_channels": 4,
        "out_channels": 4,
        "num_layers": 2,
        "attention_head_dim": 16,
        "num_attention_heads": 2,
        "joint_attention_dim": 2 * TEXT_WIDTH,
        "caption_projection_dim": 32,
        "pooled_projection_dim": 2 * TEXT_WIDTH,
        "pos_embed_max_size": latent_size,
        **overrides,
    }


def tiny_vae(*, seed: int = 0) -> diffusers.AutoencoderKL:
    """A ~100k-parameter VAE: RGB to 4 latent channels at half the resolution (untrained, seeded)."""
    with _seeded(seed):
        return diffusers.AutoencoderKL(
            in_channels=3,
            out_channels=3,
            down_block_types=("DownEncoderBlock2D", "DownEncoderBlock2D"),
            up_block_types=("UpDecoderBlock2D", "UpDecoderBlock2D"),
            block_out_channels=(16, 32),
            latent_channels=4,
            layers_per_block=1,
            norm_num_groups=8,
            sample_size=32,
            scaling_factor=1.0,
            shift_factor=0.0,
        )


def word_level_tokenizer(vocabulary: Sequence[str], *, max_length: int = 16) -> PreTrainedTokenizerFast:
    """A tokenizer splitting on whitespace and punctuation, one id per word of ``vocabulary``; BOS and EOS added."""
    vocab = {token: index for index, token in enumerate(SPECIAL_TOKENS)}
    for word in vocabulary:
        vocab.setdefault(word.lower(), len(vocab))
    tokenizer = Tokenizer(models.WordLevel(vocab, unk_token="<unk>"))
    tokenizer.pre_tokenizer = pre_tokenizers.Whitespace()
    bos, eos = SPECIAL_TOKENS[1], SPECIAL_TOKENS[2]
    tokenizer.post_processor = processors.TemplateProcessing(
        single=f"{bos} $A {eos}", special_tokens=[(bos, vocab[bos]), (eos, vocab[eos])]
    )
    return PreTrainedTokenizerFast(
        tokenizer_object=tokenizer,
        bos_token=bos,
        eos_token=eos,
        pad_token="<pad>",
        unk_token="<unk>",
        model_max_length=max_length,
        do_lower_case=True,
    )


def build_tiny_sd3_pipeline(
    vocabulary: Sequence[str],
    *,
    seed: int = 0,
    image_size: int = 32,
    vae: diffusers.AutoencoderKL | None = None,
    max_length: int = 16,
    **transformer_overrides: Any,
) -> diffusers.StableDiffusion3Pipeline:
    """Build a tiny Stable Diffusion 3 pipeline with random weights, offline.

    The text encoders' token embeddings are drawn with unit variance (not CLIP's 0.02), so
    that different words give clearly different prompt embeddings before any training.

    Args:
        vocabulary: the words the tokenizer knows (others become ``<unk>``).
        seed: seeds every random initialisation.
        image_size: the image side in pixels (the latents are half of it).
        vae: a (trained) VAE to use instead of a random ``tiny_vae()``.
        max_length: the CLIP and T5 token limits.
        **transformer_overrides: keys replacing ``tiny_sd3_transformer_config()``'s.

    Returns:
        A ``diffusers.StableDiffusion3Pipeline`` on the CPU in float32.
    """
    tokenizer = word_level_tokenizer(vocabulary, max_length=max_length)
    ids = {"bos_token_id": 1, "eos_token_id": 2, "pad_token_id": 0}
    clip = CLIPTextConfig(
        vocab_size=len(tokenizer),
        hidden_size=TEXT_WIDTH,
        intermediate_size=2 * TEXT_WIDTH,
        num_hidden_layers=2,
        num_attention_heads=2,
        max_position_embeddings=max_length,
        projection_dim=TEXT_WIDTH,
        **ids,
    )
    t5 = T5Config(
        vocab_size=len(tokenizer),
        d_model=2 * TEXT_WIDTH,
        d_kv=16,
        d_ff=2 * TEXT_WIDTH,
        num_layers=1,
        num_heads=4,
        decoder_start_token_id=0,
        **ids,
    )
    with _seeded(seed):
        encoders = [CLIPTextModelWithProjection(clip), CLIPTextModelWithProjection(clip), T5EncoderModel(t5)]
        for encoder in encoders:
            torch.nn.init.normal_(encoder.get_input_embeddings().weight, std=1.0)
        transformer = diffusers.SD3Transformer2DModel(
            **tiny_sd3_transformer_config(latent_size=image_size // 2, **transformer_overrides)
        )
    return diffusers.StableDiffusion3Pipeline(
        transformer=transformer,
        scheduler=diffusers.FlowMatchEulerDiscreteScheduler(shift=1.0),
        vae=vae if vae is not None else tiny_vae(seed=seed),
        text_encoder=encoders[0],
        tokenizer=tokenizer,
        text_encoder_2=encoders[1],
        tokenizer_2=tokenizer,
        text_encoder_3=encoders[2],
        tokenizer_3=tokenizer,
    )
