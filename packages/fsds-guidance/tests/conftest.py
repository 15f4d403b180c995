import pytest
from fsds_guidance.testing import tiny_components


@pytest.fixture(scope="session")
def tiny_models():
    return tiny_components(seed=0)
