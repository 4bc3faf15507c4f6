import os
import shutil

import pytest
import torch

from rnnlab import native

# Tests run two workers on two cores (pytest -n 2): one thread each avoids oversubscription.
torch.set_num_threads(1)


def pytest_collection_modifyitems(config, items):
    if torch.cuda.is_available():
        return
    skip = pytest.mark.skip(reason="needs a CUDA device")
    for item in items:
        if "cuda" in item.keywords:
            item.add_marker(skip)


@pytest.fixture(autouse=True)
def _seed():
    torch.manual_seed(0)


@pytest.fixture(params=["python", "native"])
def kernels(request, monkeypatch):
    """Runs a test on both paths of the engine (RNNLAB_KERNELS): its Python loops and the native
    CPU kernels. Without a C++ compiler the native case is skipped; with one, a kernel that does
    not build is a failure, not a skip."""
    if request.param == "native" and not native.available():
        compiler = os.environ.get("CXX", "c++")
        if shutil.which(compiler) is None:
            pytest.skip(f"no C++ compiler ({compiler}): the native kernels cannot be built")
        pytest.fail(f"the native kernels did not build: {native._state.error}")
    monkeypatch.setenv(native.ENV, request.param)
    return request.param
