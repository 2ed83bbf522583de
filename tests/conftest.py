import os
from collections.abc import Iterator

import pytest

pytest_plugins = ["tests.support.fixtures", "tests.k8sapi.fixtures"]


@pytest.fixture(autouse=True, scope="session")
def _session_cache_dir(tmp_path_factory: pytest.TempPathFactory) -> Iterator[None]:
    """meshc's cache (compiled validator, kept compilations and checks) in a directory of the
    test session's own, inherited by every meshc the tests start: the user's cache is left as it
    was, and no test depends on what an earlier run left there."""
    before = os.environ.get("MESHC_CACHE_DIR")
    os.environ["MESHC_CACHE_DIR"] = str(tmp_path_factory.mktemp("meshc-cache"))
    yield
    if before is None:
        os.environ.pop("MESHC_CACHE_DIR", None)
    else:
        os.environ["MESHC_CACHE_DIR"] = before
