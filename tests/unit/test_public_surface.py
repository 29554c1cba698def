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


def test_transport_module_exports_its_owners_and_their_statistics() -> None:
    import resolver.transport

    assert sorted(resolver.transport.__all__) == [
        "EncryptedTransport",
        "Exchange",
        "ForwardingUpstream",
        "Report",
        "Servers",
        "ServersStatistics",
        "Upstream",
        "UpstreamStatistics",
        "format_address",
        "upstream_for",
    ]


def test_case_mismatch_is_an_upstream_error_carrying_the_server() -> None:
    from resolver.errors import CaseMismatch, UpstreamError

    error = CaseMismatch("[::1]:53", "the reply's question differs in case only")
    assert isinstance(error, UpstreamError)
    assert error.server == "[::1]:53"
    assert str(error).startswith("[::1]:53: ")
