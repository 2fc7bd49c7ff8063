"""HQ-SAM: registry, official key sets, HQ decoding against the official decoder, CLI --hq."""

from __future__ import annotations

import warnings
from dataclasses import replace
from pathlib import Path

import geopandas as gpd
import numpy as np
import pytest
import torch
from click.testing import CliRunner
from shapely.geometry import Point, box

from rs_sam.checkpoints import load_into_model
from rs_sam.errors import CheckpointError, ConfigError
from rs_sam.models.decoding import ChipFeatures, SamDecoder, decode_hq
from rs_sam.models.encoders import FrozenEncoder, HqEmbedding, get_encoder, load_encoder
from rs_sam.models.fast_decoder import decode_hq_tokens, is_hq_supported, is_supported
from rs_sam.models.mask_proposals import ProposalSettings, propose_masks
from rs_sam.segmentation.objects import SamMaskGenerator
from rs_sam.segmentation.prompted import decode_logits, decode_prompts
from rs_sam.segmentation.prompts import Prompt
from rs_sam.segmentation.settings import SegmentSettings
from tests.helpers.stand_ins import randomise_weights
from tests.helpers.synthetic import ORIGIN, UTM33

pytestmark = pytest.mark.filterwarnings("ignore::rs_sam.models.encoders.base.RandomWeightsWarning")

HQ_NAMES = ["sam_hq_vit_b", "sam_hq_vit_l", "sam_hq_vit_h", "sam_hq_vit_tiny"]
HQ_ONLY_KEYS = (
    "hf_token",
    "hf_mlp",
    "compress_vit_feat",
    "embedding_encoder",
    "embedding_maskfeature",
)


def _official_hq():
    """segment_anything_hq's build_sam (imported without timm's deprecation noise)."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        from segment_anything_hq import sam_model_registry
    return sam_model_registry


@pytest.fixture(scope="module")
def hq_vit() -> FrozenEncoder:
    torch.manual_seed(0)
    return load_encoder("sam_hq_vit_b", weights="random", tiny=True)


@pytest.fixture(scope="module")
def hq_tinyvit() -> FrozenEncoder:
    torch.manual_seed(0)
    return load_encoder("sam_hq_vit_tiny", weights="random", tiny=True)


def _chip(side: int = 256, seed: int = 0) -> torch.Tensor:
    return torch.rand(1, 3, side, side, generator=torch.Generator().manual_seed(seed)) * 255


def _official_forward(encoder, embedding, interm, points, *, multimask, hq_token_only):
    """The official MaskDecoderHQ.forward on point prompts."""
    pe, decoder = encoder.prompt_encoder, encoder.hq_decoder
    labels = torch.ones(points.shape[:2], dtype=torch.int64)
    return _official_decode(pe, decoder, embedding, interm, multimask, hq_token_only,
                            points=(points, labels))  # fmt: skip


def _official_decode(pe, decoder, embedding, interm, multimask, hq_token_only, **prompts):
    """The official prompt encoder (``prompts``: points, boxes) and MaskDecoderHQ.forward."""
    with torch.inference_mode():
        sparse, dense = pe(**(dict(points=None, boxes=None) | prompts), masks=None)
        return decoder(
            image_embeddings=embedding,
            image_pe=pe.get_dense_pe(),
            sparse_prompt_embeddings=sparse,
            dense_prompt_embeddings=dense,
            multimask_output=multimask,
            hq_token_only=hq_token_only,
            interm_embeddings=[interm.permute(0, 2, 3, 1)],  # official: channels last, a list
        )


def _small_official_hq(seed: int):
    """A small MaskDecoderHQ of segment_anything_hq's own classes (transformer included) and
    a PromptEncoder, with weights far from the default init (attention far from uniform)."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        import segment_anything_hq.modeling as hq_modeling
    torch.manual_seed(seed)
    transformer = hq_modeling.TwoWayTransformer(depth=2, embedding_dim=32, mlp_dim=64,
                                                num_heads=4)  # fmt: skip
    decoder = hq_modeling.MaskDecoderHQ(transformer_dim=32, transformer=transformer,
                                        iou_head_hidden_dim=32, vit_dim=24)  # fmt: skip
    pe = hq_modeling.PromptEncoder(embed_dim=32, image_embedding_size=(16, 16),
                                   input_image_size=(256, 256), mask_in_chans=16)  # fmt: skip
    randomise_weights(decoder)
    randomise_weights(pe)
    return pe.eval(), decoder.eval()


def _assert_close(actual: torch.Tensor, expected: torch.Tensor, rel: float) -> None:
    scale = max(1.0, expected.abs().max().item())
    torch.testing.assert_close(actual, expected, rtol=rel, atol=rel * scale)


# --------------------------------------------------------------------------- registry


def test_registry_lists_the_hq_encoders() -> None:
    for name in HQ_NAMES:
        spec = get_encoder(name)
        assert spec.hq and spec.embedding_dim == 256 and spec.input_size == 1024
        assert spec.checkpoint.filename == f"{name}.pth"
        assert spec.checkpoint.url == f"https://huggingface.co/lkeab/hq-sam/resolve/main/{name}.pth"
    b = get_encoder("sam_hq_vit_b").checkpoint
    assert b.size == 379_335_069
    assert b.sha256 == "14a9d662cd6f5a9c2dba6d40ab0058d88d287e4a18fd6fdc6ad5fb1a3fdeaa57"
    assert get_encoder("sam_hq_vit_b").channels == get_encoder("sam_vit_b").channels
    assert get_encoder("sam_hq_vit_tiny").channels == get_encoder("mobile_sam").channels
    assert not any(get_encoder(n).hq for n in ("mobile_sam", "sam_vit_b", "fastsam_s"))


@pytest.mark.parametrize("name", ["sam_hq_vit_b", "sam_hq_vit_tiny"])
def test_tiny_hq_encoders_embed_and_decode_plainly(name: str, hq_vit, hq_tinyvit) -> None:
    encoder = hq_vit if name == "sam_hq_vit_b" else hq_tinyvit
    assert type(encoder.hq_decoder).__name__ == "MaskDecoderHQ"
    assert type(encoder.mask_decoder).__name__ == "MaskDecoder"  # the plain view
    # both decode through the fast decoder, as plain SAM does
    assert is_supported(encoder.prompt_encoder, encoder.mask_decoder)
    assert is_hq_supported(encoder.hq_decoder)
    out = encoder.embed_hq(_chip())
    assert isinstance(out, HqEmbedding)
    side = encoder.input_size // 16
    assert out.interm.shape[0] == 1 and out.interm.shape[-2:] == (side, side)
    torch.testing.assert_close(out.embedding, encoder.embed(_chip()))
    pyramid = encoder(_chip())  # the same pyramid as the plain variant's
    torch.testing.assert_close(out.embedding, pyramid.embedding)
    for feature, stride, channels in zip(
        pyramid.features, encoder.strides, encoder.channels, strict=True
    ):
        assert feature.shape == (1, channels, 256 // stride, 256 // stride)
    # the plain view shares the HQ decoder's modules and is not registered a second time
    names = {n for n, _ in encoder.named_parameters()}
    assert not any(".mask_decoder." in n and "_plain" in n for n in names)
    view_params = {id(p) for p in encoder.mask_decoder.parameters()}
    assert view_params <= {id(p) for p in encoder.hq_decoder.parameters()}
    hq_only = [
        n for n, _ in encoder.sam.mask_decoder.named_parameters() if n.startswith(HQ_ONLY_KEYS)
    ]
    assert len(hq_only) == 25 and len(encoder.sam.state_dict()) - 25 == len(
        load_encoder(
            "sam_vit_b" if name == "sam_hq_vit_b" else "mobile_sam", weights="random", tiny=True
        ).sam.state_dict()
    )


def test_plain_encoders_refuse_hq_embedding() -> None:
    plain = load_encoder("sam_vit_b", weights="random", tiny=True)
    assert plain.hq_decoder is None
    with pytest.raises(ConfigError, match=r"not an HQ-SAM encoder.*sam_hq_vit_b"):
        plain.embed_hq(_chip())


def test_plain_decoding_with_an_hq_encoder_is_sams(hq_vit) -> None:
    """The HQ file's SAM weights in a plain build decode exactly as the HQ build's view."""
    plain = load_encoder("sam_vit_b", weights="random", tiny=True)
    sam_part = {k: v for k, v in hq_vit.sam.state_dict().items() if ".hf_" not in k
                and not k.startswith(tuple(f"mask_decoder.{p}" for p in HQ_ONLY_KEYS))}  # fmt: skip
    plain.sam.load_state_dict(sam_part, strict=True)
    embedding = hq_vit.embed(_chip())
    torch.testing.assert_close(embedding, plain.embed(_chip()))
    prompts = [Prompt(1, [[100.0, 120.0]], [1]), Prompt(2, [], [], box=[20, 30, 200, 220])]
    ours = decode_logits(hq_vit, ChipFeatures(embedding), prompts, 256)
    ref = decode_logits(plain, ChipFeatures(embedding), prompts, 256)
    for (a, ia), (b, ib) in zip(ours, ref, strict=True):
        torch.testing.assert_close(a, b)
        torch.testing.assert_close(ia, ib)


# --------------------------------------------------------------------------- checkpoints


@pytest.mark.slow
def test_official_hq_vit_b_key_set_loads_strictly(tmp_path: Path) -> None:
    """The official vit_b HQ build's keys and shapes load strictly; plain <-> HQ refuse."""
    with torch.device("meta"):
        official = _official_hq()["vit_b"]()
    shapes = {k: v.shape for k, v in official.state_dict().items()}
    assert sum(k.startswith(tuple(f"mask_decoder.{p}" for p in HQ_ONLY_KEYS)) for k in shapes) == 25
    state_dict = {k: torch.zeros(s) for k, s in shapes.items()}
    spec = get_encoder("sam_hq_vit_b")
    hq = spec.builder(spec)
    load_into_model(hq.sam, state_dict, encoder=spec.name, source="sam_hq_vit_b.pth")
    # an HQ file in a plain build: one line naming what it is
    plain_spec = get_encoder("sam_vit_b")
    plain = plain_spec.builder(plain_spec)
    with pytest.raises(CheckpointError) as info:
        load_into_model(plain.sam, state_dict, encoder="sam_vit_b", source="sam_hq_vit_b.pth")
    message = str(info.value)
    assert "\n" not in message and "25 unexpected keys" in message
    assert "'sam_hq_vit_b' checkpoint: use encoder 'sam_hq_vit_b'" in message
    # and a plain file in the HQ build
    plain_sd = {k: v for k, v in state_dict.items() if k in plain.sam.state_dict()}
    load_into_model(plain.sam, plain_sd, encoder="sam_vit_b", source="sam_vit_b_01ec64.pth")
    with pytest.raises(CheckpointError) as info:
        load_into_model(hq.sam, plain_sd, encoder=spec.name, source="sam_vit_b_01ec64.pth")
    message = str(info.value)
    assert "\n" not in message and "25 missing keys" in message
    assert "'sam_vit_b' checkpoint: use encoder 'sam_vit_b'" in message


@pytest.mark.slow
def test_official_light_hq_sam_file_loads_strictly(tmp_path: Path) -> None:
    """The official vit_tiny build (random) saved to a file loads strictly and decodes alike."""
    torch.manual_seed(1)
    official = _official_hq()["vit_tiny"]()
    official.eval()
    path = tmp_path / "sam_hq_vit_tiny.pth"
    torch.save(official.state_dict(), path)
    encoder = load_encoder("sam_hq_vit_tiny", checkpoint=path)
    assert not encoder.random_weights
    # the decoders hold the same weights: same logits on the same (random) inputs
    generator = torch.Generator().manual_seed(3)
    embedding = torch.randn(1, 256, 64, 64, generator=generator)
    interm = torch.randn(1, 160, 64, 64, generator=generator)
    points = torch.tensor([[[300.0, 400.0]], [[700.0, 120.0]]])
    sparse, dense = official.prompt_encoder(
        points=(points, torch.ones(2, 1, dtype=torch.int64)), boxes=None, masks=None
    )
    with torch.inference_mode():
        ref, ref_iou = official.mask_decoder(
            embedding, official.prompt_encoder.get_dense_pe(), sparse, dense, True, False,
            [interm.permute(0, 2, 3, 1)],
        )  # fmt: skip
    got = decode_hq(encoder.prompt_encoder, encoder.hq_decoder, embedding, interm,
                    points=points, multimask_output=True)  # fmt: skip
    torch.testing.assert_close(got.logits, ref, atol=1e-4, rtol=1e-4)
    torch.testing.assert_close(got.iou, ref_iou, atol=1e-5, rtol=1e-5)
    # MobileSAM's file is refused by the HQ build, and the HQ file by MobileSAM's
    mobile_spec = get_encoder("mobile_sam")
    mobile = mobile_spec.builder(mobile_spec)
    with pytest.raises(CheckpointError, match="'sam_hq_vit_tiny' checkpoint: use encoder"):
        mobile.load_checkpoint(path)
    mobile_file = tmp_path / "mobile_sam.pt"
    torch.save(mobile.sam.state_dict(), mobile_file)
    with pytest.raises(CheckpointError, match=r"25 missing keys.*'mobile_sam' checkpoint"):
        load_encoder("sam_hq_vit_tiny", checkpoint=mobile_file)


def test_interm_features_are_segment_anything_hq_s(hq_vit, hq_tinyvit) -> None:
    image = _chip()
    # ViT: segment_anything_hq's ImageEncoderViT returns the global-attention blocks' tokens
    with torch.inference_mode():
        embedding, interms = hq_vit.sam.image_encoder(hq_vit.preprocess(image))
    out = hq_vit.embed_hq(image)
    torch.testing.assert_close(out.embedding, embedding)
    torch.testing.assert_close(out.interm, interms[0].permute(0, 3, 1, 2))
    # TinyViT: the output of layers[1] (its patch merge into stage 2), as TinyViT's
    # forward_features takes it (which hard-codes a 64x64 grid, so it is replayed here)
    vit = hq_tinyvit.sam.image_encoder
    with torch.inference_mode():
        tokens = vit.layers[1](vit.layers[0](vit.patch_embed(hq_tinyvit.preprocess(image))))
    side = hq_tinyvit.input_size // 16
    out = hq_tinyvit.embed_hq(image)
    expected = tokens.view(1, side, side, -1).permute(0, 3, 1, 2)
    assert out.interm.shape == expected.shape == (1, 64, side, side)
    torch.testing.assert_close(out.interm, expected)


def test_hq_files_do_not_fit_another_backbone(hq_vit, tmp_path: Path) -> None:
    path = tmp_path / "hq_vit.pth"
    torch.save(hq_vit.sam.state_dict(), path)
    spec = get_encoder("sam_hq_vit_tiny")
    with pytest.raises(CheckpointError) as info:
        spec.builder(spec, tiny=True).load_checkpoint(path)
    assert "does not fit encoder 'sam_hq_vit_tiny'" in str(info.value)
    assert "\n" not in str(info.value)


# --------------------------------------------------------------------------- decoding


@pytest.mark.parametrize("multimask", [False, True])
def test_hq_logits_are_the_official_decoder_s(hq_vit, multimask: bool) -> None:
    embedding, interm = hq_vit.embed_hq(_chip())
    points = torch.tensor([[[40.0, 50.0]], [[200.0, 90.0]], [[128.0, 128.0]]])
    pe, decoder = hq_vit.prompt_encoder, hq_vit.hq_decoder
    add = decode_hq(pe, decoder, embedding, interm, points=points, multimask_output=multimask,
                    hq="add", chunk=2)  # fmt: skip
    only = decode_hq(pe, decoder, embedding, interm, points=points, multimask_output=multimask,
                     hq="only")  # fmt: skip
    for got, hq_token_only in ((add, False), (only, True)):
        ref, ref_iou = _official_forward(
            hq_vit, embedding, interm, points, multimask=multimask, hq_token_only=hq_token_only
        )
        assert got.logits.shape == ref.shape == (3, 1, 64, 64)
        torch.testing.assert_close(got.logits, ref)
        torch.testing.assert_close(got.iou, ref_iou)
    torch.testing.assert_close(add.iou, only.iou)
    # add = SAM's chosen mask logits + the HQ token's, at the decoder's resolution
    labels = torch.ones(3, 1, dtype=torch.int64)
    sparse, dense = pe(points=(points, labels), boxes=None, masks=None)
    with torch.inference_mode():
        fused = decoder.embedding_encoder(embedding) + decoder.compress_vit_feat(interm)
        masks, _ = decoder.predict_masks(embedding, pe.get_dense_pe(), sparse, dense, fused)
    sam_slot = add.index + 1 if multimask else add.index  # output 0 is the single mask
    sam_logits = masks[torch.arange(3), sam_slot][:, None]
    torch.testing.assert_close(add.logits, sam_logits + only.logits)
    torch.testing.assert_close(only.logits, masks[:, 4:5])
    assert ((add.index >= 0) & (add.index <= (2 if multimask else 0))).all()


@pytest.mark.parametrize("multimask", [False, True])
@pytest.mark.parametrize("hq", ["add", "only"])
def test_fast_hq_decoding_equals_the_official_decoder(
    monkeypatch: pytest.MonkeyPatch, multimask: bool, hq: str
) -> None:
    """decode_hq's fast path (SAM's fast decoder + the HQ token) = MaskDecoderHQ.forward."""
    pe, decoder = _small_official_hq(seed=0)
    assert is_hq_supported(decoder)
    generator = torch.Generator().manual_seed(1)
    embedding = torch.randn(1, 32, 16, 16, generator=generator)
    interm = torch.randn(1, 24, 16, 16, generator=generator)
    points = torch.rand(7, 2, 2, generator=generator) * 256
    labels = torch.tensor([[1, 0]] * 7)  # a background point
    boxes = torch.tensor([[10.0, 20.0, 120.0, 200.0], [0.0, 0.0, 255.0, 255.0], [60, 5, 90, 80]])
    cases = [dict(points=points, labels=labels), dict(boxes=boxes),
             dict(points=points[:3, :1], labels=labels[:3, :1], boxes=boxes)]  # fmt: skip
    references = []
    for case in cases:
        point_prompts = (case["points"], case["labels"]) if "points" in case else None
        references.append(_official_decode(pe, decoder, embedding, interm, multimask,
                                           hq == "only", points=point_prompts,
                                           boxes=case.get("boxes")))  # fmt: skip

    def official_path(*args, **kwargs):
        raise AssertionError("decode_hq took the official path")

    monkeypatch.setattr(decoder, "predict_masks", official_path)
    for case, (ref, ref_iou) in zip(cases, references, strict=True):
        assert ref.abs().max() > 1.0  # the weights make non-trivial logits
        got = decode_hq(pe, decoder, embedding, interm, **case, multimask_output=multimask,
                        hq=hq, chunk=3)  # fmt: skip  # ragged chunks
        assert got.logits.shape == ref.shape
        _assert_close(got.logits, ref, 1e-4)
        _assert_close(got.iou, ref_iou, 1e-4)


def test_fast_hq_decoding_is_exact_in_float64() -> None:
    """In double precision the fast HQ path agrees with the official one to ~1e-12."""
    pe, decoder = _small_official_hq(seed=2)
    decoder.double()  # the official prompt encoder computes in float32 whatever its dtype
    generator = torch.Generator().manual_seed(3)
    embedding = torch.randn(1, 32, 16, 16, generator=generator, dtype=torch.float64)
    interm = torch.randn(1, 24, 16, 16, generator=generator, dtype=torch.float64)
    points = torch.rand(5, 1, 2, generator=generator, dtype=torch.float64) * 256
    for hq in ("add", "only"):
        ref, ref_iou = _official_decode(pe, decoder, embedding, interm, True, hq == "only",
                                        points=(points, torch.ones(5, 1)))  # fmt: skip
        got = decode_hq(pe, decoder, embedding, interm, points=points, multimask_output=True,
                        hq=hq, chunk=2)  # fmt: skip
        assert got.logits.dtype == torch.float64
        _assert_close(got.logits, ref, 1e-10)
        _assert_close(got.iou, ref_iou, 1e-10)


def test_unsupported_hq_decoder_takes_the_official_path() -> None:
    pe, decoder = _small_official_hq(seed=4)

    class Custom(type(decoder)):  # type: ignore[misc]
        def predict_masks(self, *args, **kwargs):
            masks, iou = super().predict_masks(*args, **kwargs)
            return masks + 1.0, iou

    custom = Custom(transformer_dim=32, transformer=decoder.transformer, iou_head_hidden_dim=32,
                    vit_dim=24)  # fmt: skip
    custom.load_state_dict(decoder.state_dict())
    custom.eval()
    assert is_hq_supported(decoder) and not is_hq_supported(custom)
    generator = torch.Generator().manual_seed(5)
    embedding = torch.randn(1, 32, 16, 16, generator=generator)
    interm = torch.randn(1, 24, 16, 16, generator=generator)
    points = torch.rand(3, 1, 2, generator=generator) * 256
    ref, ref_iou = _official_decode(pe, custom, embedding, interm, True, False,
                                    points=(points, torch.ones(3, 1)))  # fmt: skip
    got = decode_hq(pe, custom, embedding, interm, points=points, multimask_output=True)
    torch.testing.assert_close(got.logits, ref)
    torch.testing.assert_close(got.iou, ref_iou)


def test_decode_hq_tokens_checks_shapes(hq_tinyvit) -> None:
    embedding = hq_tinyvit.embed(_chip())
    pe, decoder = hq_tinyvit.prompt_encoder, hq_tinyvit.hq_decoder
    sparse, dense = pe(points=(torch.zeros(2, 1, 2), torch.ones(2, 1)), boxes=None, masks=None)
    kw = dict(multimask_output=True, hq_token_only=False)
    with pytest.raises(ValueError, match="hq_features must be"):
        decode_hq_tokens(decoder, embedding, pe.get_dense_pe(), sparse, dense[:1], embedding, **kw)
    with pytest.raises(ValueError, match="embedding and dense"):
        decode_hq_tokens(decoder, embedding, pe.get_dense_pe(), sparse, dense, embedding, **kw)
    with pytest.raises(ValueError, match="chunk"):
        decode_hq_tokens(decoder, embedding, pe.get_dense_pe(), sparse, dense[:1], embedding,
                         chunk=0, **kw)  # fmt: skip


def test_hq_decoding_of_boxes_and_empty_batches(hq_tinyvit) -> None:
    embedding, interm = hq_tinyvit.embed_hq(_chip())
    pe, decoder = hq_tinyvit.prompt_encoder, hq_tinyvit.hq_decoder
    boxes = torch.tensor([[10.0, 20.0, 120.0, 200.0], [0.0, 0.0, 255.0, 255.0]])
    got = decode_hq(pe, decoder, embedding, interm, boxes=boxes, hq="only")
    sparse, dense = pe(points=None, boxes=boxes, masks=None)
    with torch.inference_mode():
        ref, _ = decoder(embedding, pe.get_dense_pe(), sparse, dense, False, True,
                         [interm.permute(0, 2, 3, 1)])  # fmt: skip
    torch.testing.assert_close(got.logits, ref)
    empty = decode_hq(pe, decoder, embedding, interm, points=torch.zeros(0, 1, 2))
    assert empty.logits.shape == (0, 1, 64, 64) and empty.index.shape == (0,)
    with pytest.raises(ValueError, match="MaskDecoderHQ"):
        decode_hq(pe, hq_tinyvit.mask_decoder, embedding, interm, boxes=boxes)
    with pytest.raises(ValueError, match="points or boxes"):
        decode_hq(pe, decoder, embedding, interm)


def test_prompts_with_hq_differ_from_plain_and_keep_their_index(hq_vit) -> None:
    embedding, interm = hq_vit.embed_hq(_chip())
    prompts = [Prompt(1, [[100.0, 120.0]], [1]), Prompt(2, [[10.0, 10.0], [90.0, 40.0]], [1, 0]),
               Prompt(3, [], [], box=[20, 30, 200, 220])]  # fmt: skip
    plain = decode_logits(hq_vit, ChipFeatures(embedding), prompts, 256)
    add = decode_logits(hq_vit, ChipFeatures(embedding, interm), prompts, 256, hq="add")
    only = decode_logits(hq_vit, ChipFeatures(embedding, interm), prompts, 256, hq="only")
    for (p, _), (a, ai), (o, _) in zip(plain, add, only, strict=True):
        assert a.shape == o.shape == (1, 64, 64) and ai.shape == (1,)
        assert not torch.allclose(a, o) and not torch.allclose(a[0], p[0])
    masks = decode_prompts(hq_vit, ChipFeatures(embedding, interm), prompts, 128, hq="add")
    assert [len(m) for m in masks] == [1, 1, 1]
    assert masks[0][0].mask.shape == (128, 128) and masks[0][0].index in (0, 1, 2)
    assert masks[1][0].index == 0 and masks[2][0].index == 0
    with pytest.raises(ConfigError, match="one mask per prompt"):
        decode_logits(hq_vit, ChipFeatures(embedding, interm), prompts, 256, "all", hq="add")
    with pytest.raises(ConfigError, match="early-layer features"):
        decode_logits(hq_vit, ChipFeatures(embedding), prompts, 256, hq="add")
    plain_encoder = load_encoder("sam_vit_b", weights="random", tiny=True)
    with pytest.raises(ConfigError, match="--hq/--hq-only needs an HQ-SAM encoder"):
        decode_logits(plain_encoder, ChipFeatures(embedding, interm), prompts, 256, hq="only")


def test_automatic_masks_with_hq(hq_tinyvit) -> None:
    embedding, interm = hq_tinyvit.embed_hq(_chip())
    settings = ProposalSettings(points_per_side=3, pred_iou_thresh=0, stability_thresh=0,
                                box_nms_thresh=1.0, min_mask_pixels=0)  # fmt: skip
    pe = hq_tinyvit.prompt_encoder
    kw = dict(settings=settings, keep_logits=True)
    features = ChipFeatures(embedding, interm)
    plain = propose_masks(SamDecoder(pe, hq_tinyvit.mask_decoder), ChipFeatures(embedding), **kw)
    add = propose_masks(SamDecoder(pe, hq_tinyvit.hq_decoder, hq="add"), features, **kw)
    only = propose_masks(SamDecoder(pe, hq_tinyvit.hq_decoder, hq="only"), features, **kw)
    assert len(add) <= 9 and len(only) <= 9 and len(plain) <= 27  # one mask per point with HQ
    assert add.logits is not None and plain.logits is not None
    assert not torch.equal(add.logits[:1], only.logits[:1])  # type: ignore[index]
    with pytest.raises(ValueError, match="MaskDecoderHQ"):
        SamDecoder(pe, hq_tinyvit.mask_decoder, hq="add")
    with pytest.raises(ValueError, match="early-layer features"):
        propose_masks(SamDecoder(pe, hq_tinyvit.hq_decoder, hq="add"), ChipFeatures(embedding))
    # the fused HQ features are computed once per image, not per batch of points
    calls = []
    decoder = hq_tinyvit.hq_decoder
    hooks = [module.register_forward_hook(lambda m, i, o: calls.append(m))
             for module in (decoder.embedding_encoder, decoder.compress_vit_feat)]  # fmt: skip
    try:
        batched = propose_masks(SamDecoder(pe, decoder, hq="add"), features, **(
            kw | dict(settings=replace(settings, points_per_batch=2))))  # fmt: skip
    finally:
        for hook in hooks:
            hook.remove()
    assert calls == [decoder.embedding_encoder, decoder.compress_vit_feat]  # 5 batches, once
    torch.testing.assert_close(batched.logits, add.logits)
    generator = SamMaskGenerator(hq_tinyvit, settings, hq="only")
    image = _chip(200).numpy()[0]
    assert all(m.mask.shape == (200, 200) for m in generator(image))
    with pytest.raises(ConfigError, match="needs an HQ-SAM encoder"):
        SamMaskGenerator(load_encoder("mobile_sam", weights="random", tiny=True), settings,
                         hq="add")  # fmt: skip


def test_settings_check_hq() -> None:
    assert SegmentSettings().hq == "off"
    assert SegmentSettings(encoder="sam_hq_vit_tiny", hq="only").hq == "only"
    with pytest.raises(ConfigError, match="needs an HQ-SAM encoder: --encoder sam_hq_vit_b"):
        SegmentSettings(encoder="mobile_sam", hq="add")
    with pytest.raises(ConfigError, match="unknown"):
        SegmentSettings(encoder="sam_hq_vit_b", hq="more")  # type: ignore[arg-type]


# --------------------------------------------------------------------------- CLI


def _run(*args: object):
    from rs_sam.cli.main import cli

    return CliRunner().invoke(cli, [str(a) for a in args])


@pytest.mark.slow
def test_cli_segment_hq_end_to_end(tmp_path: Path, pair_paths, tiny_encoder) -> None:
    image = pair_paths[0]
    out = tmp_path / "objects.gpkg"
    result = _run("segment", image, "-o", out, "--encoder", "sam_hq_vit_b", "--hq",
                  "--weights", "random", "--chip-size", "128", "--points-per-side", "3",
                  "--pred-iou-thresh", "0", "--stability-thresh", "0", "-q")  # fmt: skip
    assert result.exit_code == 0, result.output
    found = gpd.read_file(out)
    assert len(found) > 0 and found.crs.to_epsg() == 32633 and (found["area_m2"] > 0).all()
    # prompt mode
    x0, y0 = ORIGIN * (50, 40)
    prompts = tmp_path / "prompts.gpkg"
    gpd.GeoDataFrame(
        [{"id": 1, "label": 1, "geometry": Point(x0, y0)},
         {"id": 2, "label": 1, "geometry": box(x0, y0 - 500, x0 + 400, y0 - 100)}],
        geometry="geometry", crs=UTM33,
    ).to_file(prompts)  # fmt: skip
    out = tmp_path / "masks.gpkg"
    result = _run("segment", image, "--mode", "prompt", "--prompts", prompts, "-o", out,
                  "--encoder", "sam_hq_vit_b", "--hq-only", "--weights", "random",
                  "--chip-size", "128", "--context", "32", "-q")  # fmt: skip
    assert result.exit_code == 0, result.output
    masks = gpd.read_file(out)
    assert len(masks) <= 2 and set(masks["mask_index"]) <= {0, 1, 2}
    assert np.isfinite(masks["score"]).all()


def test_cli_hq_errors(tmp_path: Path, pair_paths, tiny_encoder) -> None:
    image, out = pair_paths[0], tmp_path / "o.gpkg"
    result = _run("segment", image, "-o", out, "--hq", "--weights", "random")
    assert result.exit_code == 2
    assert result.output.strip().splitlines() == [
        "Error: --hq needs an HQ-SAM encoder: --encoder sam_hq_vit_b (or sam_hq_vit_tiny, "
        "sam_hq_vit_l, sam_hq_vit_h); 'mobile_sam' has SAM's plain decoder"
    ]
    result = _run("segment", image, "-o", out, "--hq-only", "--encoder", "sam_vit_b")
    assert result.exit_code == 2 and "--hq-only needs an HQ-SAM encoder" in result.output
    result = _run("segment", image, "-o", out, "--hq", "--hq-only", "--encoder", "sam_hq_vit_b")
    assert result.exit_code == 2 and "exclude each other" in result.output
    result = _run("segment", image, "-o", out, "--mode", "prompt", "--prompts", "p.gpkg",
                  "--multimask", "all", "--hq", "--encoder", "sam_hq_vit_b")  # fmt: skip
    assert result.exit_code == 2 and "one mask per prompt" in result.output
    assert not out.exists()
