"""Homes and caches as users have them: read-only homes, damaged cache files."""

import contextlib
import os
import sqlite3
import subprocess

import pytest
from click.testing import CliRunner

from fakes import FakeBackend
from test_llmoe import FAST, market, run_cli  # noqa: F401  (fixture)
from tradesim.cli import main
from tradesim.llm import DecisionCache, LanguageModel
from tradesim.llm import model as model_module


@pytest.fixture(autouse=True)
def fake_router(monkeypatch):
    monkeypatch.setitem(model_module.BACKENDS, "fake", lambda target, options: FakeBackend(f"fake:{target}"))


@contextlib.contextmanager
def read_only(directory):
    """`directory` seen through a read-only mount (root ignores permission bits, not a read-only
    file system); without the privilege to mount, the directory made unwritable for a non-root user."""
    if os.geteuid() != 0:
        modes = {p: p.stat().st_mode for p in [directory, *directory.rglob("*")]}
        for path in modes:
            path.chmod(modes[path] & ~0o222)
        try:
            yield directory
        finally:
            for path, mode in modes.items():
                path.chmod(mode)
        return
    mount = directory.parent / f"{directory.name}-read-only"
    mount.mkdir()
    done = subprocess.run(["mount", "--bind", "-o", "ro", str(directory), str(mount)], capture_output=True)
    if done.returncode != 0:
        pytest.skip(f"cannot make a read-only mount here: {done.stderr.decode().strip()}")
    try:
        yield mount
    finally:
        subprocess.run(["umount", "--lazy", str(mount)], check=True)  # in-process caches may still hold files open


def test_a_read_only_home_serves_a_readonly_cache_and_says_in_one_line_what_cannot_be_written(market, tmp_path, monkeypatch):
    bars, news, dates = market
    home = tmp_path / "home"
    monkeypatch.setenv("TRADESIM_HOME", str(home))
    args = ["--strategy", "llmoe", "--ticker", "MSFT", "--data", bars, "--news", news, "--train-end", dates[250].date(), "--router", "fake:1", *FAST]
    run_cli(*args, "--out", tmp_path / "first")
    with read_only(home) as frozen:
        monkeypatch.setenv("TRADESIM_HOME", str(frozen))
        again = run_cli(*args, "--out", tmp_path / "again", "--llm-cache", "readonly")
        assert (tmp_path / "again" / "decisions.jsonl").read_text() == (tmp_path / "first" / "decisions.jsonl").read_text()
        assert "model fake:1: 0 calls" in again.output
        refused = CliRunner().invoke(main, ["backtest", *map(str, args), "--no-reuse-decisions", "--out", str(tmp_path / "refused")])
        assert isinstance(refused.exception, SystemExit), repr(refused.exception)
        assert refused.exit_code == 1 and "Traceback" not in refused.output, refused.exception
        assert len(refused.output.strip().splitlines()) <= 2 and "cannot be written" in refused.output.strip().splitlines()[-1]
        retrain = CliRunner().invoke(main, ["backtest", *map(str, args), "--seed", "7", "--llm-cache", "readonly", "--out", str(tmp_path / "seven")])
        assert retrain.exit_code == 1 and "cannot write" in retrain.output.strip().splitlines()[-1] and "Read-only" in retrain.output
        assert not (tmp_path / "refused").exists() and not (tmp_path / "seven").exists()
        stats = CliRunner().invoke(main, ["cache", "stats"])
        assert stats.exit_code == 0 and "fake:1" in stats.output


@pytest.mark.parametrize("damage", ["garbage", "truncated"])
def test_a_damaged_cache_is_moved_aside_with_a_warning_and_the_run_goes_on(tmp_path, damage, capsys):
    path = tmp_path / "cache.sqlite"
    model = LanguageModel(FakeBackend(), DecisionCache(path), progress=False)
    model.choose([f"prompt {i}" for i in range(300)], ["A", "B"])
    model.cache.close()
    if damage == "garbage":
        path.write_bytes(b"this is not a database at all" * 200)
    else:
        path.write_bytes(path.read_bytes()[:1500])
    for name in ("-wal", "-shm"):
        (tmp_path / f"cache.sqlite{name}").unlink(missing_ok=True)
    fresh = LanguageModel(FakeBackend(), DecisionCache(path), progress=False)
    fresh.choose(["prompt 1", "prompt 2"], ["A", "B"])
    assert fresh.usage.model_calls == 2
    assert "was damaged" in capsys.readouterr().err
    assert [p.name for p in tmp_path.glob("cache.sqlite.damaged-*")]
    assert sqlite3.connect(path).execute("SELECT COUNT(*) FROM entries").fetchone()[0] == 2


def test_cache_clear_on_a_garbage_file_moves_it_aside(tmp_path):
    path = tmp_path / "cache.sqlite"
    path.write_bytes(b"garbage" * 1000)
    result = CliRunner().invoke(main, ["cache", "clear", "--cache", str(path)])
    assert result.exit_code == 0 and "deleted 0 entries" in result.output
    assert list(tmp_path.glob("cache.sqlite.damaged-*"))
