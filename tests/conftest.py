import os
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]


def _data_root() -> Path:
    return Path(os.environ.get("CSR_DATA") or REPO.parent / "shared" / "datasets")


@pytest.fixture(scope="session")
def data_root() -> Path:
    root = _data_root()
    if not (root / "Set5" / "HR").is_dir():
        if os.environ.get("CI"):
            pytest.fail(f"CI run without the datasets: {root} has no Set5/HR (set CSR_DATA)")
        pytest.skip(f"datasets not found at {root} (set CSR_DATA)")
    return root


@pytest.fixture(scope="module")
def one_thread():
    """Tiny tensors: one intra-op thread is much faster than two fighting over a busy CPU."""
    import torch
    n = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(n)


def pytest_configure(config):
    """Test this checkout's package, not another clone's that a `pip install -e` elsewhere points to."""
    import csr
    try:
        csr.check_checkout(REPO)
    except RuntimeError as e:
        pytest.exit(str(e), returncode=4)
