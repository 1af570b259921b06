"""distributed.setup's process_group option: bad values and a plain (non-torchrun) launch are
clear errors; "auto" in a plain process makes no group. (torchrun runs: test_distributed.py and
tests/bin/test_gpu_check.py, whose one-process run reports the gloo backend it got.)"""

import pytest
import torch.distributed as dist

from asr_recipes.training import distributed


def test_process_group_option_is_checked(monkeypatch):
    monkeypatch.delenv("MASTER_ADDR", raising=False)
    with pytest.raises(ValueError, match="process_group must be 'auto' or 'always'"):
        distributed.setup("cpu", process_group="yes")
    with pytest.raises(ValueError, match="needs a torchrun launch"):
        distributed.setup("cpu", process_group="always")


def test_auto_in_a_plain_process_makes_no_group(monkeypatch):
    for name in ("WORLD_SIZE", "RANK", "LOCAL_RANK", "MASTER_ADDR"):
        monkeypatch.delenv(name, raising=False)
    info = distributed.setup("cpu")
    assert (info.world_size, info.distributed, info.forced_group) == (1, False, False)
    assert not dist.is_initialized()
