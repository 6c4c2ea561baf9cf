import pytest

import cutedl


@pytest.fixture(autouse=True)
def _seed():
    """Every test starts from the same global random state."""
    cutedl.set_seed(1234)
    yield
