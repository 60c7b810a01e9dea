"""One reader of the launcher's rank variables (``contrastive_mer.distributed``): the run folder's rank check and
sharded extraction parse the same values with one rule (unset or blank: not set; otherwise an integer >= 0)."""

from __future__ import annotations

import subprocess
import sys

import pytest

from contrastive_mer import distributed
from contrastive_mer.distributed import LaunchEnvError, is_launched_rank, launched_rank, launched_world, local_rank
from contrastive_mer.extract.shards import local_rank_device, resolve_shard
from contrastive_mer.pretrain import run_dir


@pytest.mark.parametrize("raw, expected", [("0", 0), ("2", 2), (" 3 ", 3), ("", None), ("  ", None)])
def test_readers_share_one_rule(raw, expected):
    env = {"RANK": raw, "LOCAL_RANK": raw}
    assert launched_rank(env) == expected and local_rank(env) == expected
    if expected != 0:
        assert launched_world({"WORLD_SIZE": raw}) == expected
    assert launched_rank({}) is None and launched_world({}) is None and local_rank({}) is None
    assert is_launched_rank(env) == bool(expected)


@pytest.mark.parametrize("name", ["RANK", "LOCAL_RANK", "NODE_RANK"])
@pytest.mark.parametrize("raw", ["x", "1.5", "-1"])
def test_bad_value_names_the_variable(name, raw):
    with pytest.raises(LaunchEnvError, match=f"{name}='{raw}'"):
        is_launched_rank({name: raw})
    with pytest.raises(LaunchEnvError, match="WORLD_SIZE='0'"):
        launched_world({"WORLD_SIZE": "0"})


def test_both_callers_use_the_one_reader(monkeypatch):
    """The run folder and the shard resolution see the same environment the same way (an empty RANK, once a
    crash in sharded extraction and 'rank 0' in the run folder, is "not set" in both)."""
    assert run_dir.is_launched_rank is distributed.is_launched_rank
    monkeypatch.setenv("RANK", "")
    monkeypatch.setenv("WORLD_SIZE", "2")
    monkeypatch.delenv("LOCAL_RANK", raising=False)
    monkeypatch.delenv("NODE_RANK", raising=False)
    assert not run_dir.is_launched_rank()
    with pytest.raises(ValueError, match="RANK is not set"):
        resolve_shard("auto", None)
    monkeypatch.setenv("RANK", "1")
    assert run_dir.is_launched_rank() and resolve_shard("auto", None) == (1, 2)
    monkeypatch.setenv("RANK", "one")
    for call in (run_dir.is_launched_rank, lambda: resolve_shard("auto", None)):
        with pytest.raises(LaunchEnvError, match="RANK='one' is not an integer"):
            call()
    with pytest.raises(LaunchEnvError, match="LOCAL_RANK='a'"):
        local_rank_device({"LOCAL_RANK": "a"})
    assert local_rank_device({"LOCAL_RANK": ""}) is None


def test_env_readers_import_no_torch():
    code = ("import sys; from contrastive_mer.distributed import is_launched_rank; is_launched_rank(); "
            "print('torch' in sys.modules)")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    assert out.strip() == "False"
