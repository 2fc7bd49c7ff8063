"""The OpenVINO encoder runtime: same outputs as torch, a checked cache, clear refusals."""

from __future__ import annotations

import sys
import warnings

import pytest
import torch

from rs_sam.errors import ConfigError, MissingDependencyError
from rs_sam.inference.settings import SharedSettings
from rs_sam.models.encoders import load_encoder
from rs_sam.models.encoders import openvino_runtime as ovr
from rs_sam.models.recipe import ModelRecipe

pytest.importorskip("openvino", reason="the openvino extra is not installed")


def tiny(name: str):
    torch.manual_seed(0)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        return load_encoder(name, weights="random", tiny=True)


def chips(encoder, batch: int = 1) -> torch.Tensor:
    g = torch.Generator().manual_seed(1)
    return torch.rand(batch, 3, encoder.input_size, encoder.input_size, generator=g) * 255


def assert_close(got, expected) -> None:
    scale = expected.abs().max()
    assert got.shape == expected.shape
    assert (got - expected).abs().max() <= 1e-4 * scale


@pytest.mark.filterwarnings("ignore::rs_sam.models.encoders.RandomWeightsWarning")
def test_mobile_sam_equals_torch(tmp_path):
    encoder = tiny("mobile_sam")
    x = chips(encoder, batch=2)
    expected_embedding, expected = encoder.embed(x), encoder(x)
    encoder.runtime = ovr.OpenVinoRuntime(cache_dir=tmp_path)
    assert_close(encoder.embed(x), expected_embedding)
    out = encoder(x)
    for got, want in zip(out.features, expected.features, strict=True):
        assert_close(got, want)
    assert_close(out.embedding, expected.embedding)
    # both methods compiled and reused, not converted on every call
    assert set(encoder.runtime._graphs) == {("_embed", tuple(x.shape)), ("_encode", tuple(x.shape))}
    assert all(g is not None for g in encoder.runtime._graphs.values())
    assert not list(tmp_path.iterdir())  # random weights are never cached


@pytest.mark.filterwarnings("ignore::rs_sam.models.encoders.RandomWeightsWarning")
@pytest.mark.parametrize(
    ("name", "method"), [("sam2_hiera_tiny", "embed_high_res"), ("sam_hq_vit_tiny", "embed_hq")]
)
def test_decoder_inputs_of_sam2_and_hq_sam_equal_torch(tmp_path, name, method):
    encoder = tiny(name)
    x = chips(encoder)
    expected = getattr(encoder, method)(x)
    encoder.runtime = ovr.OpenVinoRuntime(cache_dir=tmp_path)
    got = getattr(encoder, method)(x)
    assert type(got) is type(expected)
    got_tensors, expected_tensors = ovr._flatten(got), ovr._flatten(expected)
    assert len(got_tensors) == len(expected_tensors) == (3 if method == "embed_high_res" else 2)
    for g, e in zip(got_tensors, expected_tensors, strict=True):
        assert_close(g, e)


@pytest.mark.filterwarnings("ignore::rs_sam.models.encoders.RandomWeightsWarning")
def test_cache_is_written_once_and_read_without_converting(tmp_path, monkeypatch):
    encoder = tiny("mobile_sam")
    encoder.random_weights = False  # as if official: cacheable
    x = chips(encoder)
    expected = encoder.embed(x)
    encoder.runtime = ovr.OpenVinoRuntime(cache_dir=tmp_path)
    encoder.embed(x)
    (entry,) = tmp_path.iterdir()
    assert (entry / "model.xml").is_file() and (entry / "model.bin").is_file()
    # another process caching the same model meanwhile: no warning, the entry kept
    runtime = encoder.runtime
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        runtime._save(runtime.ov.Core().read_model(entry / "model.xml"), entry)
    assert [p.name for p in tmp_path.iterdir()] == [entry.name]

    def no_conversion(*args, **kwargs):
        raise AssertionError("converted again instead of reading the cache")

    monkeypatch.setattr(ovr.OpenVinoRuntime, "_convert", no_conversion)
    encoder.runtime = ovr.OpenVinoRuntime(cache_dir=tmp_path)
    assert_close(encoder.embed(x), expected)
    # other weights are another entry: converting is needed (and refused here)
    with torch.no_grad():
        next(encoder.parameters()).add_(1.0)
    encoder.runtime = ovr.OpenVinoRuntime(cache_dir=tmp_path)
    with pytest.raises(AssertionError, match="converted again"):
        encoder.embed(x)


@pytest.mark.filterwarnings("ignore::rs_sam.models.encoders.RandomWeightsWarning")
def test_a_graph_that_differs_from_torch_is_not_used(tmp_path, monkeypatch):
    encoder = tiny("mobile_sam")
    encoder.random_weights = False
    x = chips(encoder)
    expected = encoder.embed(x)
    real_call = ovr._Graph.__call__
    monkeypatch.setattr(ovr._Graph, "__call__", lambda self, t: real_call(self, t) + 0.01)
    encoder.runtime = ovr.OpenVinoRuntime(cache_dir=tmp_path)
    with pytest.warns(RuntimeWarning, match="differs from torch"):
        got = encoder.embed(x)
    assert torch.equal(got, expected)  # torch's own output
    assert encoder.runtime._graphs[("_embed", tuple(x.shape))] is None
    assert torch.equal(encoder.embed(x), expected)  # and torch from then on
    assert not list(tmp_path.iterdir())  # nothing cached


@pytest.mark.filterwarnings("ignore::rs_sam.models.encoders.RandomWeightsWarning")
def test_build_encoder_applies_the_runtime(monkeypatch):
    from rs_sam.models import recipe as recipe_module

    monkeypatch.setattr(recipe_module, "load_encoder", lambda name, **kw: tiny(name))
    assert recipe_module.build_encoder(ModelRecipe("mobile_sam")).runtime is None
    built = recipe_module.build_encoder(ModelRecipe("mobile_sam", encoder_runtime="openvino"))
    assert isinstance(built.runtime, ovr.OpenVinoRuntime)


@pytest.mark.parametrize(
    ("runtime", "encoder", "device", "message"),
    [
        ("onnx", "mobile_sam", "cpu", "encoder runtime 'onnx' is unknown; use torch or openvino"),
        ("openvino", "sam_vit_b", "cpu", "does not run 'sam_vit_b'"),
        ("openvino", "fastsam_s", "auto", "does not run 'fastsam_s'"),
        ("openvino", "mobile_sam", "cuda", "runs on the CPU, not on cuda; use --device cpu"),
    ],
)
def test_refusals_are_one_line_config_errors(runtime, encoder, device, message):
    with pytest.raises(ConfigError, match=message):
        SharedSettings(encoder=encoder, encoder_runtime=runtime, device=device)


def test_settings_accept_the_supported_encoders():
    for name in ("mobile_sam", "sam_hq_vit_tiny", "sam2_hiera_tiny"):
        settings = SharedSettings(encoder=name, encoder_runtime="openvino")
        assert settings.recipe().encoder_runtime == "openvino"
    assert SharedSettings().recipe().encoder_runtime == "torch"


def test_missing_openvino_names_the_extra(monkeypatch):
    monkeypatch.setitem(sys.modules, "openvino", None)  # import fails
    monkeypatch.setattr(ovr.importlib.util, "find_spec", lambda name: None)
    with pytest.raises(MissingDependencyError, match=r"pip install 'rs-sam\[openvino\]'"):
        SharedSettings(encoder_runtime="openvino")
    with pytest.raises(MissingDependencyError, match="rs-sam"):
        ovr.OpenVinoRuntime()


def test_cli_segment_runs_the_encoder_through_openvino(
    tmp_path, pair_paths, tiny_encoder, monkeypatch
):
    import geopandas as gpd
    from click.testing import CliRunner

    from rs_sam.cli.main import cli

    monkeypatch.setenv("RS_SAM_HOME", str(tmp_path / "home"))
    calls = []
    real_call = ovr._Graph.__call__
    monkeypatch.setattr(
        ovr._Graph, "__call__", lambda s, x: calls.append(x.shape) or real_call(s, x)
    )
    out = tmp_path / "objects.gpkg"
    args = ["segment", str(pair_paths[0]), "-o", str(out), "--weights", "random",
            "--chip-size", "128", "--points-per-side", "4", "--pred-iou-thresh", "0",
            "--stability-thresh", "0", "--encoder-runtime", "openvino", "-q"]  # fmt: skip
    result = CliRunner().invoke(cli, args)
    assert result.exit_code == 0, result.output
    assert len(gpd.read_file(out)) > 0
    # the check against torch, then every chip after it
    chips = len(calls) - 1
    assert chips >= 2
