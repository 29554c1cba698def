"""The package's public surface is pinned: adding or removing a name is a deliberate change."""

from __future__ import annotations

import resolver
import resolver.pool


def test_package_exports_exactly_the_public_names() -> None:
    assert sorted(resolver.__all__) == [
        "ConfigError",
        "Guard",
        "GuardReleased",
        "Pool",
        "PoolClosed",
        "PoolError",
        "PoolStatistics",
        "PoolTimeout",
        "ResolutionFailed",
        "ResolverError",
        "UpstreamError",
        "WireError",
        "__version__",
    ]
    for name in resolver.__all__:
        assert hasattr(resolver, name)


def test_pool_module_exports_pool_guard_and_statistics() -> None:
    assert sorted(resolver.pool.__all__) == ["Guard", "Pool", "PoolStatistics"]


def test_error_tree_has_one_root() -> None:
    from resolver import errors

    for name in errors.__all__:
        assert issubclass(getattr(errors, name), errors.ResolverError)
    assert issubclass(errors.PoolTimeout, TimeoutError)
    assert issubclass(errors.ConfigError, ValueError)
    assert issubclass(errors.UpstreamTimeout, errors.UpstreamError)
