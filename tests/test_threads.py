"""The CPU thread default: applied by the CLI unless the user chose a number (--threads, OMP_NUM_THREADS, torch)."""

import pytest
import torch

from dip_lightning import threads
from dip_lightning.cli import pop_common_options
from dip_lightning.errors import InputError


@pytest.fixture
def torch_threads(monkeypatch):
    """Restore torch's thread count after the test; no thread variable in the environment."""
    before = torch.get_num_threads()
    for name in threads.USER_VARIABLES:
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setattr(threads, "_THREADS_AT_IMPORT", before)
    yield before
    torch.set_num_threads(before)


def test_the_default_is_half_the_cpus_and_is_exported_to_child_processes(torch_threads, monkeypatch):
    monkeypatch.setattr(threads, "available_cpus", lambda: 8)
    assert threads.apply_threads() == 4 == torch.get_num_threads()
    import os

    assert os.environ["OMP_NUM_THREADS"] == "4"
    monkeypatch.setattr(threads, "available_cpus", lambda: 1)
    assert threads.default_threads() == 1


def test_a_number_the_user_chose_wins(torch_threads, monkeypatch):
    monkeypatch.setattr(threads, "available_cpus", lambda: 8)
    assert threads.apply_threads(3) == 3 == torch.get_num_threads()  # --threads
    monkeypatch.setattr(threads, "_THREADS_AT_IMPORT", 3)
    monkeypatch.setenv("OMP_NUM_THREADS", "2")
    assert threads.apply_threads() == 3  # OMP_NUM_THREADS set: the default does not apply
    monkeypatch.delenv("OMP_NUM_THREADS")
    torch.set_num_threads(2)  # the program chose a number itself
    assert threads.apply_threads() == 2
    with pytest.raises(InputError, match="--threads 0"):
        threads.apply_threads(0)


def test_the_cli_takes_threads_and_verbose_from_anywhere_in_the_arguments():
    assert pop_common_options(["fit", "--threads", "2", "--config", "x", "--verbose"]) == (
        ["fit", "--config", "x"], 2, True)
    assert pop_common_options(["fit", "--threads=3"]) == (["fit"], 3, False)
    with pytest.raises(InputError, match="--threads expects a number"):
        pop_common_options(["fit", "--threads", "many"])
