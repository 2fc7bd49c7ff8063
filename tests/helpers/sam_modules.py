"""Official SAM prompt encoders and mask decoders of any size, and point prompts, for tests."""

from __future__ import annotations

import torch
from segment_anything.modeling import MaskDecoder, PromptEncoder, TwoWayTransformer

from tests.helpers.stand_ins import randomise_weights


def official_modules(
    dim: int, side: int, heads: int, mlp_dim: int, *, seed: int, randomise: bool = True
) -> tuple[PromptEncoder, MaskDecoder]:
    torch.manual_seed(seed)
    prompt_encoder = PromptEncoder(
        embed_dim=dim,
        image_embedding_size=(side, side),
        input_image_size=(16 * side, 16 * side),
        mask_in_chans=16,
    )
    mask_decoder = MaskDecoder(
        num_multimask_outputs=3,
        transformer=TwoWayTransformer(depth=2, embedding_dim=dim, mlp_dim=mlp_dim, num_heads=heads),
        transformer_dim=dim,
        iou_head_depth=3,
        iou_head_hidden_dim=dim,
    )
    if randomise:
        randomise_weights(prompt_encoder)
        randomise_weights(mask_decoder)
    return prompt_encoder.eval(), mask_decoder.eval()


def official(prompt_encoder, mask_decoder, embedding, points, labels, multimask):
    with torch.inference_mode():
        sparse, dense = prompt_encoder(points=(points, labels), boxes=None, masks=None)
        return mask_decoder(
            image_embeddings=embedding,
            image_pe=prompt_encoder.get_dense_pe(),
            sparse_prompt_embeddings=sparse,
            dense_prompt_embeddings=dense,
            multimask_output=multimask,
        )


def point_prompts(n: int, p: int, input_size: int, seed: int, dtype=torch.float32):
    g = torch.Generator().manual_seed(seed)
    points = torch.rand(n, p, 2, generator=g, dtype=dtype) * input_size
    labels = torch.ones(n, p, dtype=torch.int64)
    if p > 1:
        labels[:, 1] = 0  # a background point
    return points, labels
