"""Every module declares its public API in ``__all__``, and ``__all__`` is complete and correct."""

from __future__ import annotations

import importlib
import inspect
import pkgutil
from types import ModuleType

import pytest

import qakeapi


def all_module_names() -> list[str]:
    names = [qakeapi.__name__]
    names += [info.name for info in pkgutil.walk_packages(qakeapi.__path__, prefix=f"{qakeapi.__name__}.")]
    return sorted(names)


MODULES = all_module_names()


def load(name: str) -> ModuleType:
    return importlib.import_module(name)


def test_the_walk_finds_the_core_modules() -> None:
    expected = {
        "qakeapi",
        "qakeapi.core.application",
        "qakeapi.core.routing",
        "qakeapi.core.websockets.connection",
        "qakeapi.core.websockets.handler",
        "qakeapi.testing.client",
        "qakeapi.exceptions",
        "qakeapi.status",
    }
    assert expected <= set(MODULES)


@pytest.mark.parametrize("name", MODULES)
def test_module_has_all(name: str) -> None:
    module = load(name)
    assert isinstance(getattr(module, "__all__", None), list), f"{name} has no __all__ list"


@pytest.mark.parametrize("name", MODULES)
def test_every_name_in_all_exists(name: str) -> None:
    module = load(name)
    missing = [item for item in getattr(module, "__all__", []) if not hasattr(module, item)]
    assert missing == []


@pytest.mark.parametrize("name", MODULES)
def test_all_has_no_duplicates(name: str) -> None:
    exported = list(getattr(load(name), "__all__", []))
    assert len(exported) == len(set(exported))


@pytest.mark.parametrize("name", MODULES)
def test_every_public_class_and_function_is_in_all(name: str) -> None:
    module = load(name)
    exported = set(getattr(module, "__all__", []))
    defined_here = [
        attr
        for attr, value in vars(module).items()
        if not attr.startswith("_")
        and (inspect.isclass(value) or inspect.isfunction(value))
        and value.__module__ == name
    ]
    assert sorted(set(defined_here) - exported) == []


def test_top_level_package_reexports_the_essentials() -> None:
    for item in ("Application", "WebSocket", "WebSocketHandler", "CloseCode", "WebSocketDisconnect"):
        assert item in qakeapi.__all__


def test_the_framework_s_own_features_are_at_the_top() -> None:
    """Rooms, the send policy and clustering are what QakeAPI is for: no deep path needed."""
    from qakeapi import (
        ClusteredManager,
        HistoryPolicy,
        Overflow,
        Position,
        Rooms,
        SendPolicy,
        create_clustered_manager,
    )
    from qakeapi.core.cluster.history import HistoryPolicy as deep_history
    from qakeapi.core.clustering import ClusteredManager as deep_manager
    from qakeapi.core.rooms import Rooms as deep_rooms

    assert (Rooms, ClusteredManager, HistoryPolicy) == (deep_rooms, deep_manager, deep_history)
    assert {"Overflow", "Position", "SendPolicy", "create_clustered_manager"} <= set(qakeapi.__all__)
    assert callable(create_clustered_manager)
    assert {Overflow.__name__, Position.__name__, SendPolicy.__name__} == {"Overflow", "Position", "SendPolicy"}


def test_importing_qakeapi_needs_no_extra() -> None:
    import subprocess
    import sys

    code = (
        "import sys; sys.modules['jwt'] = None; sys.modules['redis'] = None; sys.modules['uvicorn'] = None; "
        "import qakeapi; print(len(qakeapi.__all__))"
    )
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=False)
    assert result.returncode == 0, result.stderr


def test_the_old_fanout_path_works_for_one_release_with_a_warning() -> None:
    import qakeapi.core.fanout as old
    from qakeapi.core.websockets import fanout

    with pytest.warns(DeprecationWarning, match="moved to qakeapi.core.websockets.fanout.deliver"):
        assert old.deliver is fanout.deliver
    with pytest.raises(AttributeError):
        old.broadcast  # noqa: B018 - removed: it had no caller


@pytest.mark.parametrize(
    ("name", "home"),
    [
        ("AuthConfig", "qakeapi.security.tokens"),
        ("InsecureKeyWarning", "qakeapi.security.tokens"),
        ("AuthCloseCode", "qakeapi.security.sessions"),
        ("K8S_SUBPROTOCOL_PREFIX", "qakeapi.security.carriers"),
    ],
)
def test_names_websocket_auth_handed_on_work_for_one_release_with_a_warning(name: str, home: str) -> None:
    import importlib

    from qakeapi.security import websocket_auth

    with pytest.warns(DeprecationWarning, match=f"websocket_auth.{name} moved to {home}.{name}"):
        assert getattr(websocket_auth, name) is getattr(importlib.import_module(home), name)


def test_the_guides_auth_imports_stay_without_a_warning() -> None:
    import warnings

    import qakeapi.security

    with warnings.catch_warnings():
        warnings.simplefilter("error")
        from qakeapi.security.websocket_auth import JWTAuthenticator, WebSocketAuthMiddleware
    assert JWTAuthenticator is qakeapi.security.JWTAuthenticator
    assert WebSocketAuthMiddleware is qakeapi.security.WebSocketAuthMiddleware
