"""Progress bars only on a terminal (issue 18 item 5): logs get the one-line summary, never ``\\r``-joined bars."""

from __future__ import annotations

import fcntl
import os
import pty
import struct
import subprocess
import sys
import termios
from pathlib import Path

import pytest
from typer.testing import CliRunner

from modalens.cli.main import app
from modalens.progress import show_progress

SHOP = Path(__file__).parents[1] / "fixtures" / "custom-shop" / "products.csv"
ROOT = Path(__file__).parents[2]
runner = CliRunner()


def modalens_cmd(*args) -> list[str]:
    return [sys.executable, "-m", "modalens", *map(str, args)]


def env() -> dict[str, str]:
    return {**os.environ, "PYTHONPATH": str(ROOT / "src")}


def test_index_into_a_log_writes_no_bar_but_the_summary(tmp_path):
    result = subprocess.run(modalens_cmd("index", SHOP, "--index", tmp_path / "i"), capture_output=True, text=True, env=env(), timeout=300)
    assert result.returncode == 0, result.stderr
    assert "\r" not in result.stderr + result.stdout and "indexing" not in result.stderr
    assert "20 added" in result.stdout and len(result.stdout.strip().splitlines()) == 1


def test_index_on_a_terminal_draws_the_bar(tmp_path):
    leader, follower = pty.openpty()
    fcntl.ioctl(follower, termios.TIOCSWINSZ, struct.pack("HHHH", 24, 100, 0, 0))  # a new pty is 0 columns wide
    try:
        proc = subprocess.Popen(modalens_cmd("index", SHOP, "--index", tmp_path / "i"), stdout=subprocess.PIPE, stderr=follower, env=env())
        os.close(follower)
        drawn = b""
        while True:
            try:
                chunk = os.read(leader, 65536)
            except OSError:  # the terminal closed with the process
                break
            if not chunk:
                break
            drawn += chunk
        assert proc.wait(300) == 0
    finally:
        os.close(leader)
    assert b"indexing" in drawn and b"\r" in drawn and b"20/20" in drawn


def test_progress_forces_bars_and_no_progress_silences_them(tmp_path):
    forced = runner.invoke(app, ["index", str(SHOP), "--index", str(tmp_path / "a"), "--progress"])
    assert forced.exit_code == 0, forced.output
    assert "indexing" in forced.stderr and "20/20" in forced.stderr
    quiet = runner.invoke(app, ["index", str(SHOP), "--index", str(tmp_path / "b"), "--no-progress"])
    assert quiet.exit_code == 0 and "indexing" not in quiet.stderr and "20 added" in quiet.stdout


@pytest.mark.parametrize(
    "command", [["index"], ["quickstart"], ["serve"], ["train"], ["match", "run"], ["match", "train"], ["match", "eval"], ["match", "retrain"]]
)
def test_every_long_command_takes_progress_and_no_progress(command):
    result = runner.invoke(app, [*command, "--help"], env={"COLUMNS": "200"})
    assert result.exit_code == 0 and "--progress" in result.output and "--no-progress" in result.output


def test_train_passes_the_terminal_rule_to_the_recipe(monkeypatch, tmp_path):
    import modalens.recipes as recipes

    seen = {}

    class Result:
        best_epoch, best_score, seconds, output = 1, 0.5, 1.0, "out"

    monkeypatch.setattr(recipes, "load_train_config", lambda path: type("Config", (), {"output": None})())
    def run_recipe(cfg, progress, resume):
        seen["progress"] = progress
        return Result()

    monkeypatch.setattr(recipes, "run_recipe", run_recipe)
    config = tmp_path / "c.yaml"
    config.write_text("{}")
    assert runner.invoke(app, ["train", str(config)]).exit_code == 0
    assert seen["progress"] is False  # CliRunner's stderr is no terminal
    seen.clear()
    assert runner.invoke(app, ["train", str(config), "--progress"]).exit_code == 0 and seen["progress"] is True


def test_show_progress_follows_stderr(monkeypatch):
    class Tty:
        def isatty(self):
            return True

    monkeypatch.setattr(sys, "stderr", Tty())
    assert show_progress(None) is True and show_progress(False) is False
    monkeypatch.setattr(sys, "stderr", None)
    assert show_progress(None) is False and show_progress(True) is True
