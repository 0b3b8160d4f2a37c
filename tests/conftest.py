"""Suite-wide fixtures: every test (and every subprocess it starts) uses a temporary cache."""

from __future__ import annotations

from collections.abc import Iterator

import pytest


@pytest.fixture(scope="session", autouse=True)
def _isolated_cache(tmp_path_factory: pytest.TempPathFactory) -> Iterator[None]:
    """Extracted archives, bundles and engines go to a temporary cache, never the user's ~/.cache."""
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("CMKD_EDGE_CACHE", str(tmp_path_factory.mktemp("cmkd-cache")))
        yield
