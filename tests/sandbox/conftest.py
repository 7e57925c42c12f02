import pytest
from sandbox_cases import backend_skip_reason

from ssp.sandbox import SandboxLimits, start_sandbox
from ssp.sandbox.backends import BACKENDS


@pytest.fixture(scope="module", params=BACKENDS)
def sandbox(request):
    """A small sandbox on each backend this machine supports (`SSP_SANDBOX` narrows it to one)."""
    reason = backend_skip_reason(request.param)
    if reason:
        pytest.skip(reason)
    box = start_sandbox(request.param, SandboxLimits(memory_mb=512), workers=2)
    yield box
    box.close()
