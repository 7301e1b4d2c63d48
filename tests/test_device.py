"""sopcorr.device.resolve_device: one behaviour for every configured ``*.device`` key."""
import pytest
import torch

from sopcorr.device import resolve_device
from sopcorr.errors import ConfigError


@pytest.fixture
def no_gpu(monkeypatch):
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    monkeypatch.setattr(torch.cuda, "device_count", lambda: 0)


@pytest.fixture
def one_gpu(monkeypatch):
    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    monkeypatch.setattr(torch.cuda, "device_count", lambda: 1)


@pytest.mark.parametrize("name", ["auto", None])
def test_auto_is_cpu_without_a_gpu(no_gpu, name):
    assert resolve_device(name) == torch.device("cpu")


def test_auto_is_cuda_with_a_gpu(one_gpu):
    assert resolve_device("auto").type == "cuda"


def test_cpu_is_cpu_whatever_the_machine(one_gpu):
    assert resolve_device("cpu") == torch.device("cpu")


@pytest.mark.parametrize("name", ["cuda", "cuda:0"])
def test_cuda_without_a_gpu_is_a_one_line_config_error(no_gpu, name):
    with pytest.raises(ConfigError, match=rf"device '{name}' requested but CUDA is not available") as exc:
        resolve_device(name)
    assert "\n" not in str(exc.value)


def test_cuda_index_beyond_the_visible_gpus_is_an_error(one_gpu):
    assert resolve_device("cuda:0") == torch.device("cuda:0")
    with pytest.raises(ConfigError, match=r"device 'cuda:3': only 1 CUDA device"):
        resolve_device("cuda:3")


@pytest.mark.parametrize("name", ["gpu", "tpu", "meta"])
def test_unknown_names_are_config_errors(no_gpu, name):
    with pytest.raises(ConfigError, match=rf"device '{name}'"):
        resolve_device(name)


def test_a_torch_device_passes_through(no_gpu):
    dev = torch.device("cpu")
    assert resolve_device(dev) is dev


def test_every_stage_uses_the_same_function():
    """One resolve_device for the project: no module defines or re-exports another."""
    import re
    from pathlib import Path

    from sopcorr.features import backbones
    from sopcorr.flow import nn

    assert backbones.resolve_device is nn.resolve_device is resolve_device
    src = Path(__file__).resolve().parents[1] / "src" / "sopcorr"
    defined = [p.relative_to(src).as_posix() for p in src.rglob("*.py") if re.search(r"^def resolve_device", p.read_text(), re.M)]
    assert defined == ["device.py"]
    reexported = [p.relative_to(src).as_posix() for p in src.rglob("*.py")
                  if re.search(r"import[^\n]*\bresolve_device\b[^\n]*# noqa", p.read_text())]
    assert not reexported
