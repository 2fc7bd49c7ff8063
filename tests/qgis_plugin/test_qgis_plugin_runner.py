"""The QGIS plugin's parts that need no QGIS: parameter specs and both ways of running."""

from __future__ import annotations

import os
import sys
from pathlib import Path

import click
import pytest
from click.testing import CliRunner

from rs_sam import commands, progress
from rs_sam.cli.main import cli
from rs_sam.errors import ConfigError
from rs_sam.options import COMMANDS
from rs_sam.qgis_plugin import runner
from rs_sam.qgis_plugin.runner import RunFailed, RunSettings, run_command
from rs_sam.qgis_plugin.specs import ALGORITHMS, AlgorithmSpec
from tests.helpers.qgis_runs import leftovers, tiny_python

SAM_FAST = {"weights": "random", "chip_size": 96, "overlap": 16, "points_per_side": 4,
            "pred_iou_thresh": 0.0, "stability_thresh": 0.0}  # fmt: skip
FAST = {**SAM_FAST, "threshold": 1.0}


class Feedback:
    """Records what a run reports; cancels after ``cancel_after`` progress calls."""

    def __init__(self, cancel_after: int | None = None) -> None:
        self.progress: list[float] = []
        self.info: list[str] = []
        self.cancel_after = cancel_after

    def setProgress(self, value: float) -> None:
        self.progress.append(value)

    def isCanceled(self) -> bool:
        return self.cancel_after is not None and len(self.progress) >= self.cancel_after

    def pushInfo(self, text: str) -> None:
        self.info.append(text)


# ----------------------------------------------------------------------------- specs


@pytest.mark.parametrize("spec", ALGORITHMS, ids=lambda s: s.name)
def test_parameters_mirror_the_cli_options_and_defaults(spec: AlgorithmSpec) -> None:
    command = cli.commands[spec.command]
    options = {opt: p for p in command.params if isinstance(p, click.Option) for opt in p.opts}
    arguments = [p for p in command.params if isinstance(p, click.Argument)]
    siblings = [s for s in ALGORITHMS if s.command == spec.command]  # pseudo-label: two
    assert len({p.key for s in siblings for p in s.params if p.flag is None}) == len(arguments)
    for param in (p for p in spec.params if p.flag is not None):
        option = options[param.flag]
        default = option.get_default(click.Context(command), call=True)
        if param.kind == "bool":
            assert option.is_flag and default is False and param.default is False, param.name
        elif option.multiple:  # QGIS: one comma-separated text
            assert default == () and param.default is None, param.name
        elif option.required:
            assert param.default is None and not param.optional, param.name
        else:
            assert param.default == default, param.name
        if param.kind == "enum":
            assert param.choices == tuple(option.type.choices), param.name
        expected_type = {"int": click.INT, "float": click.FLOAT, "string": click.STRING}
        if param.kind in expected_type:
            assert option.type == expected_type[param.kind], param.name
        if param.kind in ("file", "features", "vector_out", "raster_out"):
            assert isinstance(option.type, click.Path), param.name
    covered = {p.flag for s in siblings for p in s.params}
    missing = {p.opts[-1] for p in command.params if isinstance(p, click.Option)} - covered
    # -v/-q, and the CLI-only options (the cluster, previews): the QGIS provider runs locally
    cli_only = {o.flag for s in siblings for o in COMMANDS[s.name].options if o.cli_only}
    expected = {"--verbose", "--quiet"} | cli_only
    assert missing == expected & set(options), f"CLI options without a parameter: {missing}"


def test_progress_protocol_is_the_libraries() -> None:
    assert runner.PROGRESS_ENV == progress.PROGRESS_ENV
    assert runner.CANCEL_FILE_ENV == progress.CANCEL_FILE_ENV
    line = progress.format_line(3, 7)
    assert runner._parse_progress(line) == progress.parse_line(line) == (3, 7)
    assert runner._parse_progress("rs-sam-progress x 7") is None
    assert progress.parse_line("Error: nope") is None


def test_unknown_run_mode_and_missing_interpreter_are_one_line_errors(monkeypatch) -> None:
    with pytest.raises(RunFailed, match="is not a run mode"):
        run_command("segment", {}, Feedback(), RunSettings(mode="threads"))
    with pytest.raises(RunFailed, match=r"no interpreter is configured.*rs-sam qgis install"):
        run_command("segment", {}, Feedback(), RunSettings(mode="subprocess"))
    with pytest.raises(RunFailed, match="cannot start the configured Python /nonexistent/py"):
        run_command("segment", {}, Feedback(), RunSettings("subprocess", "/nonexistent/py"))


def test_recorded_interpreter_is_read_from_the_profile(tmp_path: Path) -> None:
    plugin = tmp_path / "profile" / "python" / "plugins" / "rs_sam_processing"
    plugin.mkdir(parents=True)
    assert runner.recorded_python(plugin) is None
    record = tmp_path / "profile" / "rs_sam" / "interpreter.json"
    record.parent.mkdir()
    record.write_text('{"python": "/opt/venv/bin/python"}')
    assert runner.recorded_python(plugin) == "/opt/venv/bin/python"


# ----------------------------------------------------------------------------- running


@pytest.mark.parametrize("mode", ["in-process", "subprocess"])
@pytest.mark.slow
def test_run_writes_the_output_and_reports_progress(
    mode: str, pair_paths, tmp_path: Path, tiny_encoder
) -> None:
    a, b = pair_paths
    out = tmp_path / "changes.gpkg"
    feedback = Feedback()
    settings = RunSettings(mode, tiny_python(tmp_path) if mode == "subprocess" else None)
    run_command("detect_change", {"a": a, "b": b, "output": out, **FAST}, feedback, settings)
    assert out.is_file()
    assert len(feedback.progress) > 1 and feedback.progress[-1] == 100.0
    assert feedback.progress == sorted(feedback.progress)
    assert any("RANDOM weights" in line for line in feedback.info)  # warnings are relayed


@pytest.mark.parametrize("mode", ["in-process", "subprocess"])
@pytest.mark.slow
def test_cancel_between_chips_leaves_no_output(
    mode: str, pair_paths, tmp_path: Path, tiny_encoder
) -> None:
    a, b = pair_paths
    python = tiny_python(tmp_path / "..") if mode == "subprocess" else None
    feedback = Feedback(cancel_after=1)
    with pytest.raises(RunFailed, match="cancelled"):
        run_command(
            "detect_change",
            {"a": a, "b": b, "output": tmp_path / "changes.gpkg", **FAST,
             "save_probability": tmp_path / "score.tif"},
            feedback,
            RunSettings(mode, python),
        )  # fmt: skip
    assert leftovers(tmp_path) == []


@pytest.mark.parametrize("mode", ["in-process", "subprocess"])
@pytest.mark.slow
def test_errors_are_the_cli_one_line_messages(mode: str, pair_paths, tmp_path: Path) -> None:
    a, b = pair_paths
    values = {"a": a, "b": b, "output": tmp_path / "out.gpkg", "bands": "7"}
    args = runner.cli_arguments("detect_change", values)  # what the subprocess path runs
    assert args == ["detect-change", str(a), str(b), "--bands", "7", "--output",
                    str(tmp_path / "out.gpkg")]  # fmt: skip
    expected = CliRunner().invoke(cli, args).output.strip().splitlines()[-1]
    assert expected.startswith("Error: ")
    python = sys.executable if mode == "subprocess" else None
    with pytest.raises(RunFailed) as caught:
        run_command("detect_change", values, Feedback(), RunSettings(mode, python))
    assert str(caught.value) == expected[len("Error: ") :]
    assert leftovers(tmp_path) == []


def test_subprocess_gets_no_pythonpath(monkeypatch, tmp_path: Path) -> None:
    """QGIS's PYTHONPATH points at its own Python's packages: never hand it to the child."""
    monkeypatch.setenv("PYTHONPATH", "/qgis/python")
    monkeypatch.setenv("PROJ_LIB", "/qgis/share/proj")
    seen = tmp_path / "env.txt"
    script = tmp_path / "py"
    script.write_text(
        f'#!/bin/sh\necho "${{PYTHONPATH:-unset}} ${{PROJ_LIB:-unset}} $RS_SAM_PROGRESS" '
        f'> "{seen}"\n'
    )
    script.chmod(0o755)
    runner.run_subprocess(str(script), ["--help"], Feedback())
    assert seen.read_text().split() == ["unset", "unset", "lines"]
    assert os.environ["PYTHONPATH"] == "/qgis/python"


def test_chip_progress_feeds_the_hook_and_the_lines(monkeypatch, capsys) -> None:
    monkeypatch.delenv(progress.PROGRESS_ENV, raising=False)
    assert progress.chip_progress() is None
    seen: list[tuple[int, int]] = []
    monkeypatch.setenv(progress.PROGRESS_ENV, "lines")
    with progress.reporting(lambda done, total: seen.append((done, total))):
        report = progress.chip_progress()
        assert report is not None
        report(2, 5)
    assert seen == [(2, 5)]
    assert capsys.readouterr().err == "rs-sam-progress 2 5\n"
    assert progress.chip_progress() is not None  # the lines stay; the hook is gone
    monkeypatch.setenv(progress.PROGRESS_ENV, "json")
    with pytest.raises(ConfigError, match="RS_SAM_PROGRESS='json' is not supported"):
        progress.chip_progress()


def test_plugin_metadata_and_no_folder_shadowing_qgis() -> None:
    import configparser

    import rs_sam
    from rs_sam.qgis_profile import plugin_source

    metadata = configparser.ConfigParser()
    metadata.read(plugin_source() / "metadata.txt", encoding="utf-8")
    general = metadata["general"]
    assert general["hasProcessingProvider"] == "yes"
    assert general["version"] == rs_sam.__version__
    assert (plugin_source() / general["icon"]).is_file()
    root = Path(__file__).resolve().parents[2]
    folders = ("rs_sam", "cli", "tests", "examples", "benchmarks", "configs")
    shadowing = [p for folder in folders for p in (root / folder).rglob("qgis") if p.is_dir()]
    assert shadowing == []  # a folder named qgis would shadow QGIS's own package


@pytest.mark.slow
def test_a_busy_process_sends_the_next_run_to_the_interpreter(
    pair_paths, tmp_path: Path, monkeypatch
) -> None:
    a, _ = pair_paths
    feedback = Feedback()
    out = tmp_path / "objects.gpkg"
    values = {"image": a, "output": out, **SAM_FAST}
    with runner._in_process_lock:  # another run holds QGIS's Python
        run_command("segment", values, feedback, RunSettings("auto", tiny_python(tmp_path)))
    assert out.is_file()
    assert any("runs apart" in line for line in feedback.info)
    assert any(line.startswith("Running ") for line in feedback.info)


def test_import_problems_and_unexpected_errors_are_one_line(monkeypatch) -> None:
    monkeypatch.setattr(runner, "import_problem", lambda: "ImportError: no torch")
    with pytest.raises(RunFailed, match=r"in-process but rs-sam does not import .*no torch"):
        run_command("segment", {}, Feedback(), RunSettings("in-process"))
    with pytest.raises(RunFailed, match=r"does not import in QGIS's Python \(ImportError"):
        run_command("segment", {}, Feedback(), RunSettings("auto"))
    monkeypatch.undo()

    def explode(*args, **kwargs):
        raise RuntimeError("CUDA out of memory\nlong details")

    monkeypatch.setattr(commands, "run", explode)
    feedback = Feedback()
    with pytest.raises(RunFailed) as caught:
        run_command("segment", {}, feedback, RunSettings("in-process"))
    assert str(caught.value) == "rs-sam failed: RuntimeError: CUDA out of memory"
    assert any("Traceback" in line for line in feedback.info)  # details in the log
