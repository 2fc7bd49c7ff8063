"""SAM 3 concept segmentation: the tiny segmenter on text / boxes / both, preprocessing equal to
transformers' processor, strict loading of files and folders, refusals of other generations,
and the official key set of facebook/sam3."""

from __future__ import annotations

import time
from pathlib import Path

import numpy as np
import pytest
import torch
from safetensors.torch import save_file

from rs_sam.errors import (
    CheckpointError,
    ConfigError,
    ModelFileNotFoundError,
    UnknownEncoderError,
)
from rs_sam.models.concepts import (
    CONCEPT_MODELS,
    ConceptQuery,
    Sam3ConceptSegmenter,
    load_concept_segmenter,
    loader,
)
from rs_sam.models.concepts.loader import check_sam3_keys
from rs_sam.models.concepts.sam3_config import official_config, tiny_tokenizer, tiny_vocab
from tests.helpers.sam3_files import (
    official_state_dict,
    sam1_vit_b_like,
    sam2_tiny_like,
    tiny_state_dict,
    write_tiny_folder,
    write_tokenizer_files,
)

SIDE = 96
QUERIES = (
    ConceptQuery("building", text="building"),
    ConceptQuery("exemplar", boxes=((10, 10, 40, 40), (50, 50, 60, 70)), positive=(True, False)),
    ConceptQuery("roof", text="roof", boxes=((5, 5, 20, 20),), positive=(True,)),
)


def chip(seed: int = 0) -> np.ndarray:
    return np.random.default_rng(seed).uniform(0, 255, (3, SIDE, SIDE)).astype(np.float32)


@pytest.fixture(scope="module")
def segmenter() -> Sam3ConceptSegmenter:
    torch.manual_seed(0)
    return load_concept_segmenter(tiny=True, score_threshold=0.0)


def test_tiny_segmenter_returns_instances_per_query(segmenter: Sam3ConceptSegmenter) -> None:
    segmenter(chip(), QUERIES[:1])  # warm up
    start = time.perf_counter()
    result = segmenter(chip(), QUERIES)
    elapsed = time.perf_counter() - start
    assert elapsed < 2.0
    assert len(result) == len(QUERIES)
    for instances in result:
        assert instances  # threshold 0: every query of the tiny model (8) is kept
        assert len(instances) <= 8
        scores = [inst.score for inst in instances]
        assert scores == sorted(scores, reverse=True)
        for inst in instances:
            assert inst.mask.shape == (SIDE, SIDE) and inst.mask.dtype == bool
            assert 0.0 <= inst.score <= 1.0
    assert segmenter(chip(), []) == []


def test_boxes_and_text_change_the_answer(segmenter: Sam3ConceptSegmenter) -> None:
    text_only, boxes_only, both = (
        [inst.score for inst in instances] for instances in segmenter(chip(), QUERIES)
    )
    assert text_only != boxes_only and text_only != both


def test_threshold_leaves_out_low_scores() -> None:
    torch.manual_seed(0)
    strict = load_concept_segmenter(tiny=True, score_threshold=1.0)
    assert strict(chip(), QUERIES) == [[], [], []]


def test_preprocessing_equals_transformers_processor(segmenter: Sam3ConceptSegmenter) -> None:
    from transformers import Sam3ImageProcessor

    size = segmenter.image_size
    processor = Sam3ImageProcessor(size={"height": size, "width": size})
    expected = processor(images=torch.from_numpy(chip()), return_tensors="pt")["pixel_values"]
    torch.testing.assert_close(segmenter.preprocess(chip()), expected, atol=1e-5, rtol=0)


def test_boxes_are_normalised_cxcywh(segmenter: Sam3ConceptSegmenter) -> None:
    query = ConceptQuery("exemplar", boxes=((0, 24, 48, 96),), positive=(False,))
    prompt = segmenter._boxes(query, (SIDE, SIDE))
    torch.testing.assert_close(prompt["input_boxes"], torch.tensor([[[0.25, 0.625, 0.5, 0.75]]]))
    assert prompt["input_boxes_labels"].tolist() == [[0]]


def test_tiny_file_loads_strictly_and_reproduces(tmp_path: Path) -> None:
    path = tmp_path / "model.safetensors"
    save_file(tiny_state_dict(seed=3), str(path))
    loaded = load_concept_segmenter(tiny=True, checkpoint=path, score_threshold=0.0)
    torch.manual_seed(3)
    reference = load_concept_segmenter(tiny=True, score_threshold=0.0)
    for got, want in zip(loaded(chip(), QUERIES), reference(chip(), QUERIES), strict=True):
        assert [i.score for i in got] == pytest.approx([i.score for i in want])


def test_hf_folder_loads_with_its_config_and_tokenizer_files(tmp_path: Path) -> None:
    folder = write_tiny_folder(tmp_path / "sam3")
    segmenter = load_concept_segmenter(checkpoint=folder)
    assert segmenter.image_size == 112
    vocab = tiny_vocab()
    assert segmenter.tokenizer("ab")["input_ids"] == [0, vocab["a"], vocab["b</w>"], 1]
    assert tiny_tokenizer()("ab")["input_ids"] == segmenter.tokenizer("ab")["input_ids"]
    result = segmenter(chip(), QUERIES)
    assert len(result) == 3


def test_missing_key_is_one_line(tmp_path: Path) -> None:
    state = tiny_state_dict()
    dropped = next(k for k in state if "text_projection" in k)
    del state[dropped]
    path = tmp_path / "model.safetensors"
    save_file(state, str(path))
    with pytest.raises(CheckpointError) as err:
        load_concept_segmenter(tiny=True, checkpoint=path)
    message = str(err.value)
    assert "\n" not in message and "1 missing keys" in message
    assert dropped.removeprefix("detector_model.") in message


@pytest.mark.parametrize(
    ("state", "named"),
    [(sam2_tiny_like, "SAM 2/2.1 ('sam2_hiera_tiny'"), (sam1_vit_b_like, "('sam_vit_b'")],
)
def test_other_generations_are_named(tmp_path: Path, state, named: str) -> None:
    path = tmp_path / "model.safetensors"
    save_file(state(), str(path))
    with pytest.raises(CheckpointError) as err:
        load_concept_segmenter(tiny=True, checkpoint=path)
    message = str(err.value)
    assert "\n" not in message and "is not SAM 3" in message and named in message


def test_pickles_are_named_and_refused(tmp_path: Path) -> None:
    path = tmp_path / "sam_vit_b.pth"
    torch.save(sam1_vit_b_like(), path)
    with pytest.raises(CheckpointError, match=r"PyTorch file of SAM .*safetensors only"):
        load_concept_segmenter(tiny=True, checkpoint=path)
    meta = tmp_path / "sam3.pt"
    torch.save({"model": {"detector.backbone.x": torch.zeros(1)}}, meta)
    with pytest.raises(CheckpointError, match="Meta's original layout"):
        load_concept_segmenter(tiny=True, checkpoint=meta)


def test_missing_checkpoint_and_unknown_name(tmp_path: Path) -> None:
    with pytest.raises(ModelFileNotFoundError):
        load_concept_segmenter(tiny=True, checkpoint=tmp_path / "nothing.safetensors")
    with pytest.raises(UnknownEncoderError, match="sam3"):
        load_concept_segmenter("sam4", tiny=True)
    with pytest.raises(ConfigError, match="only with weights='official'"):
        load_concept_segmenter(tiny=True, weights="random", checkpoint=tmp_path)
    with pytest.raises(ConfigError, match="'official' or 'random'"):
        load_concept_segmenter(tiny=True, weights="pretrained")  # type: ignore[arg-type]


def test_single_file_without_tokenizer_is_one_line(tmp_path: Path, monkeypatch) -> None:
    monkeypatch.setenv("RS_SAM_HOME", str(tmp_path / "home"))
    path = tmp_path / "model.safetensors"
    save_file({"x": torch.zeros(1)}, str(path))
    with pytest.raises(CheckpointError, match="no SAM 3 tokenizer beside"):
        load_concept_segmenter(checkpoint=path)
    write_tokenizer_files(tmp_path / "home" / "checkpoints" / "sam3")  # the cache's: used
    assert loader._tokenizer(None, path, tiny=False)("a")["input_ids"] == [0, 3, 1]
    write_tokenizer_files(tmp_path)  # beside the file: preferred
    assert loader._tokenizer(None, path, tiny=False)("b")["input_ids"] == [0, 5, 1]


def test_official_key_set_passes_the_key_check() -> None:
    """facebook/sam3's model.safetensors (Sam3VideoModel: detector_model., tracker_model.,
    tracker_neck.) against the full-size image model, on the meta device."""
    from transformers import Sam3Model

    with torch.device("meta"):
        expected = Sam3Model(official_config()).state_dict()
    official = official_state_dict()
    found = check_sam3_keys(expected, official, source="model.safetensors")
    assert len(found) == len(expected)
    del official["detector_model.text_projection.weight"]
    with pytest.raises(CheckpointError, match=r"1 missing keys .*text_projection\.weight"):
        check_sam3_keys(expected, official, source="model.safetensors")


def test_registry_entry() -> None:
    spec = CONCEPT_MODELS["sam3"]
    assert spec.gated and spec.licence == "SAM License (Meta)"
    assert spec.hf_repo == "facebook/sam3" and "model.safetensors" in spec.files
    assert spec.access_url == "https://huggingface.co/facebook/sam3"


@pytest.mark.slow
def test_full_size_random_builds() -> None:
    """The official configuration with random weights (about 20 s and 5 GB on a CPU; one
    1008-pixel chip then takes about 80 s on one core, so no forward here)."""
    segmenter = load_concept_segmenter(weights="random")
    assert segmenter.image_size == 1008
    assert tuple(segmenter.preprocess(chip()).shape) == (1, 3, 1008, 1008)


@pytest.mark.parametrize("query", QUERIES, ids=["text", "boxes", "text+boxes"])
def test_equals_transformers_processor_model_and_post_processing(
    segmenter: Sam3ConceptSegmenter, query: ConceptQuery
) -> None:
    """The same instances as Sam3Processor -> Sam3Model -> post_process_instance_segmentation."""
    from transformers import Sam3ImageProcessor, Sam3Processor

    size = segmenter.image_size
    processor = Sam3Processor(
        image_processor=Sam3ImageProcessor(size={"height": size, "width": size}),
        tokenizer=segmenter.tokenizer,
    )
    prompt = {}
    if query.boxes:
        prompt = {
            "input_boxes": [[list(box) for box in query.boxes]],
            "input_boxes_labels": [[int(p) for p in query.positive]],
        }
    inputs = processor(
        images=torch.from_numpy(chip()), text=query.text, return_tensors="pt", **prompt
    )
    with torch.inference_mode():
        outputs = segmenter.model(**inputs)
    (expected,) = processor.post_process_instance_segmentation(
        outputs, threshold=0.0, target_sizes=[(SIDE, SIDE)]
    )
    order = torch.argsort(expected["scores"], descending=True)
    (got,) = segmenter(chip(), [query])
    assert [i.score for i in got] == pytest.approx(expected["scores"][order].tolist(), abs=1e-5)
    for inst, mask in zip(got, expected["masks"][order], strict=True):
        assert (inst.mask != mask.bool().numpy()).mean() < 1e-3
