"""Which device the towers run on: the provider list a session gets, and a clear error for cuda where there is none."""

from __future__ import annotations

import subprocess
import sys

import numpy as np
import pytest

from modalens.backends.device import (
    CPU_PROVIDER,
    CUDA_PROVIDER,
    DEVICE_ENV,
    DeviceError,
    check_session_device,
    onnx_providers,
    requested_device,
    torch_device,
)
from modalens.backends.runtime import OrtModel

ort = pytest.importorskip("onnxruntime")
CUDA_HERE = CUDA_PROVIDER in ort.get_available_providers()
WITH_CUDA = [CUDA_PROVIDER, CPU_PROVIDER]


@pytest.fixture(autouse=True)
def _no_device_variable(monkeypatch):
    monkeypatch.delenv(DEVICE_ENV, raising=False)


@pytest.fixture(scope="module")
def doubling_graph() -> bytes:
    """A one-node ONNX graph (y = x + x), small enough to open a real session in milliseconds."""
    onnx = pytest.importorskip("onnx")
    from onnx import TensorProto, helper

    x = helper.make_tensor_value_info("x", TensorProto.FLOAT, [None, 4])
    y = helper.make_tensor_value_info("y", TensorProto.FLOAT, [None, 4])
    graph = helper.make_graph([helper.make_node("Add", ["x", "x"], ["y"])], "double", [x], [y])
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    model.ir_version = 8
    onnx.checker.check_model(model)
    return model.SerializeToString()


@pytest.mark.parametrize(
    "available, device, env, expected",
    [
        ([CPU_PROVIDER], None, None, [CPU_PROVIDER]),  # the default wheel: CPU
        (WITH_CUDA, None, None, WITH_CUDA),  # onnxruntime-gpu: CUDA first, the CPU for what CUDA lacks
        (["TensorrtExecutionProvider", *WITH_CUDA], "auto", None, WITH_CUDA),  # other providers are not chosen
        (WITH_CUDA, None, "cpu", [CPU_PROVIDER]),  # the variable turns the GPU off
        (WITH_CUDA, "cpu", "cuda", [CPU_PROVIDER]),  # an explicit device wins over the variable
        (WITH_CUDA, "CUDA", "cpu", WITH_CUDA),
        ([CPU_PROVIDER], "auto", "auto", [CPU_PROVIDER]),
    ],
)
def test_providers_follow_the_device_and_what_onnxruntime_offers(monkeypatch, available, device, env, expected):
    if env is not None:
        monkeypatch.setenv(DEVICE_ENV, env)
    assert onnx_providers(available, device) == expected


def test_cuda_without_the_cuda_provider_is_a_clear_error(monkeypatch):
    with pytest.raises(DeviceError, match="no CUDAExecutionProvider.*onnxruntime-gpu.*MODALENS_DEVICE=cpu"):
        onnx_providers([CPU_PROVIDER], "cuda")
    monkeypatch.setenv(DEVICE_ENV, "cuda")
    with pytest.raises(DeviceError, match="offers CPUExecutionProvider"):
        onnx_providers([CPU_PROVIDER])
    monkeypatch.setenv(DEVICE_ENV, "gpu")
    with pytest.raises(DeviceError, match="MODALENS_DEVICE: the device must be one of auto, cpu, cuda, not 'gpu'"):
        requested_device()


def test_a_real_session_runs_on_the_cpu_here_and_refuses_cuda(monkeypatch, doubling_graph):
    x = np.arange(8, dtype=np.float32).reshape(2, 4)
    model = OrtModel(doubling_graph, threads=1, device="cpu")
    assert model.providers == [CPU_PROVIDER]
    assert np.array_equal(model.run({"x": x})[0], 2 * x)
    if CUDA_HERE:
        assert OrtModel(doubling_graph, threads=1).providers[0] == CUDA_PROVIDER  # auto takes the GPU
        return
    assert OrtModel(doubling_graph, threads=1).providers == [CPU_PROVIDER]  # auto: the CPU
    monkeypatch.setenv(DEVICE_ENV, "cuda")
    with pytest.raises(DeviceError, match="onnxruntime-gpu"):
        OrtModel(doubling_graph, threads=1)
    assert OrtModel(doubling_graph, threads=1, device="cpu").providers == [CPU_PROVIDER]  # a pinned session (export checks)


class _SessionThatFellBack:
    """What onnxruntime-gpu gives when CUDA's libraries cannot be loaded: a session on the CPU alone."""

    def get_providers(self) -> list[str]:
        return [CPU_PROVIDER]


def test_a_session_that_did_not_get_cuda_fails_when_cuda_was_explicit_and_warns_under_auto():
    with pytest.raises(DeviceError, match="could not start it"):
        check_session_device(_SessionThatFellBack(), WITH_CUDA, "cuda")
    with pytest.warns(RuntimeWarning, match="running on the CPU"):
        check_session_device(_SessionThatFellBack(), WITH_CUDA, None)
    check_session_device(_SessionThatFellBack(), [CPU_PROVIDER], None)  # asked for the CPU, got it: silent


@pytest.mark.skipif(__import__("torch").cuda.is_available(), reason="this machine has a GPU")
def test_torch_device_is_the_cpu_here_and_cuda_is_refused(monkeypatch):
    assert torch_device("auto") == "cpu" and torch_device(None) == "cpu" and torch_device("cpu") == "cpu"
    with pytest.raises(DeviceError, match="torch sees no GPU"):
        torch_device("cuda")
    monkeypatch.setenv(DEVICE_ENV, "cuda")
    with pytest.raises(DeviceError, match="torch sees no GPU"):
        torch_device("auto")  # a training config's default defers to the variable
    assert torch_device("cpu") == "cpu"


@pytest.mark.skipif(CUDA_HERE, reason="this onnxruntime offers CUDA")
def test_search_with_cuda_asked_for_and_absent_is_one_line_not_a_traceback(tmp_path):
    """End to end: the command's query encoder opens its session on the asked-for device, and says why it cannot."""
    import os

    env = {**os.environ, DEVICE_ENV: "cuda"}
    done = subprocess.run(
        [sys.executable, "-m", "modalens", "tag", str(tmp_path / "none.jpg"), "--labels", "shirt,dress"],
        capture_output=True, text=True, env=env, timeout=300,
    )  # fmt: skip
    assert done.returncode == 2, done.stderr
    assert "onnxruntime-gpu" in done.stderr and "Traceback" not in done.stderr
