"""Path templates, :class:`Route` and :class:`Router` — pure functions, no event loop."""

from __future__ import annotations

import functools
import re

import pytest

from qakeapi.core.routing import Route, Router, compile_path


async def endpoint() -> None: ...


async def other() -> None: ...


# -- compile_path ----------------------------------------------------------------------------


def test_compile_path_without_params() -> None:
    pattern, converters = compile_path("/health")
    assert pattern.match("/health") is not None
    assert pattern.match("/health/") is None
    assert pattern.match("/healthz") is None
    assert converters == {}


def test_compile_path_converters() -> None:
    _, converters = compile_path("/{a}/{b:int}/{c:float}/{d:path}")
    assert converters == {"a": str, "b": int, "c": float, "d": str}


def test_compile_path_escapes_literal_text() -> None:
    pattern, _ = compile_path("/file.json")
    assert pattern.match("/file.json") is not None
    assert pattern.match("/fileXjson") is None


def test_compile_path_requires_leading_slash() -> None:
    with pytest.raises(ValueError, match="route path must start with '/': 'items'"):
        compile_path("items")


def test_compile_path_refuses_duplicate_parameters() -> None:
    with pytest.raises(ValueError, match=re.escape("duplicate parameter 'x' in route path '/a/{x}/b/{x:int}'")):
        compile_path("/a/{x}/b/{x:int}")


def test_route_refuses_a_bad_path() -> None:
    with pytest.raises(ValueError, match="must start with '/'"):
        Route("nope", endpoint)


# -- Route.match -----------------------------------------------------------------------------


def test_route_match_converts_parameters() -> None:
    route = Route("/users/{user_id:int}/posts/{slug}", endpoint, frozenset({"GET"}))
    assert route.match("/users/12/posts/hello-world") == {"user_id": 12, "slug": "hello-world"}


def test_route_match_returns_none_without_a_match() -> None:
    route = Route("/users/{user_id:int}", endpoint, frozenset({"GET"}))
    assert route.match("/users/twelve") is None
    assert route.match("/users/12/extra") is None


def test_str_parameter_does_not_cross_a_slash() -> None:
    route = Route("/rooms/{name}", endpoint)
    assert route.match("/rooms/a/b") is None
    assert route.match("/rooms/") is None


def test_int_parameter_accepts_negative_numbers() -> None:
    assert Route("/n/{n:int}", endpoint).match("/n/-3") == {"n": -3}


@pytest.mark.parametrize(("raw", "value"), [("1.25", 1.25), ("7", 7.0), ("-0.5", -0.5)])
def test_float_parameter(raw: str, value: float) -> None:
    params = Route("/f/{x:float}", endpoint).match(f"/f/{raw}")
    assert params == {"x": value}
    assert isinstance(params["x"], float)


@pytest.mark.parametrize("raw", ["1e5", "1.", ".5", "nan"])
def test_float_parameter_refuses_other_spellings(raw: str) -> None:
    assert Route("/f/{x:float}", endpoint).match(f"/f/{raw}") is None


def test_path_parameter_spans_slashes() -> None:
    assert Route("/static/{rest:path}", endpoint).match("/static/css/site.css") == {"rest": "css/site.css"}


def test_get_route_also_serves_head() -> None:
    assert Route("/", endpoint, frozenset({"GET"})).methods == {"GET", "HEAD"}
    assert Route("/", endpoint, frozenset({"POST"})).methods == {"POST"}


# -- Router.match ----------------------------------------------------------------------------


def test_router_returns_the_route_and_params() -> None:
    route = Route("/items/{item_id:int}", endpoint, frozenset({"GET"}))
    match = Router([route]).match("http", "/items/5", "GET")
    assert match.route is route
    assert match.params == {"item_id": 5}


def test_router_first_match_wins() -> None:
    first = Route("/items/{name}", endpoint, frozenset({"GET"}))
    second = Route("/items/special", other, frozenset({"GET"}))
    assert Router([first, second]).match("http", "/items/special", "GET").route is first


def test_router_no_match_is_none_with_nothing_allowed() -> None:
    match = Router([Route("/a", endpoint, frozenset({"GET"}))]).match("http", "/b", "GET")
    assert match.route is None
    assert match.params == {}
    assert match.allowed == frozenset()


def test_router_wrong_method_reports_the_allowed_methods_of_every_matching_route() -> None:
    router = Router()
    router.add(Route("/items", endpoint, frozenset({"GET"})))
    router.add(Route("/items", other, frozenset({"POST"})))
    match = router.match("http", "/items", "DELETE")
    assert match.route is None
    assert match.allowed == {"GET", "HEAD", "POST"}


def test_router_picks_the_route_serving_the_method() -> None:
    reader = Route("/items", endpoint, frozenset({"GET"}))
    writer = Route("/items", other, frozenset({"POST"}))
    assert Router([reader, writer]).match("http", "/items", "POST").route is writer


def test_router_keeps_websocket_and_http_routes_apart() -> None:
    http = Route("/live", endpoint, frozenset({"GET"}))
    ws = Route("/live", other, websocket=True)
    router = Router([http, ws])
    assert router.match("websocket", "/live").route is ws
    assert router.match("http", "/live", "GET").route is http


def test_router_websocket_match_ignores_method() -> None:
    ws = Route("/ws/{room}", endpoint, websocket=True)
    match = Router([ws]).match("websocket", "/ws/lobby")
    assert match.route is ws
    assert match.params == {"room": "lobby"}


def test_http_request_does_not_match_a_websocket_route() -> None:
    match = Router([Route("/ws", endpoint, websocket=True)]).match("http", "/ws", "GET")
    assert match.route is None
    assert match.allowed == frozenset()


# -- mistakes refused at registration ---------------------------------------------------------


def sync_endpoint(request: object) -> str:
    return "sync"


class AsyncCallable:
    async def __call__(self, request: object) -> str:
        return "callable"


class SyncCallable:
    def __call__(self, request: object) -> str:
        return "callable"


def test_route_shape_ignores_parameter_names() -> None:
    assert Route("/items/{item_id:int}/{slug}", endpoint).shape == "/items/{int}/{str}"
    assert Route("/items/{id:int}/{name:str}", endpoint).shape == "/items/{int}/{str}"


def test_a_second_endpoint_for_the_same_path_and_method_is_refused() -> None:
    router = Router([Route("/items/{item_id:int}", endpoint, frozenset({"GET"}))])
    with pytest.raises(ValueError, match="duplicate route") as info:
        router.add(Route("/items/{id:int}", other, frozenset({"POST", "GET"})))
    message = str(info.value)
    assert "GET, HEAD /items/{id:int} is already served by endpoint" in message
    assert "register other under another path" in message
    assert "methods=[...]" in message
    assert len(router.routes) == 1


def test_the_same_path_with_other_methods_or_types_is_allowed() -> None:
    router = Router()
    router.add(Route("/items", endpoint, frozenset({"GET"})))
    router.add(Route("/items", other, frozenset({"POST"})))
    router.add(Route("/items/{n:int}", other, frozenset({"GET"})))
    router.add(Route("/items/{name}", other, frozenset({"GET"})))  # another converter: other paths
    router.add(Route("/items", other, websocket=True))
    assert len(router.routes) == 5


def test_a_second_websocket_endpoint_for_a_path_is_refused() -> None:
    router = Router([Route("/ws", endpoint, websocket=True)])
    with pytest.raises(ValueError, match=r"duplicate route: WebSocket /ws is already served by endpoint"):
        router.add(Route("/ws", other, websocket=True))


def test_the_router_constructor_refuses_duplicates_too() -> None:
    with pytest.raises(ValueError, match="duplicate route"):
        Router([Route("/a", endpoint, frozenset({"GET"})), Route("/a", other, frozenset({"GET"}))])


def test_a_sync_http_endpoint_is_refused_with_the_fix_in_the_message() -> None:
    with pytest.raises(TypeError) as info:
        Route("/sync", sync_endpoint, frozenset({"GET"}))  # type: ignore[arg-type]
    assert str(info.value) == (
        "the endpoint sync_endpoint for GET, HEAD /sync is not a coroutine function; "
        "define it with 'async def sync_endpoint(request, ...)'"
    )


def test_a_sync_websocket_endpoint_is_refused_with_the_fix_in_the_message() -> None:
    with pytest.raises(TypeError, match=r"define it with 'async def sync_endpoint\(websocket, \.\.\.\)'"):
        Route("/ws", sync_endpoint, websocket=True)  # type: ignore[arg-type]


def test_callable_objects_are_judged_by_their_call_method() -> None:
    assert Route("/ok", AsyncCallable(), frozenset({"GET"})).endpoint is not None
    with pytest.raises(TypeError, match="the endpoint SyncCallable for GET, HEAD /no is not a coroutine function"):
        Route("/no", SyncCallable(), frozenset({"GET"}))  # type: ignore[arg-type]


def test_a_partial_of_a_coroutine_function_is_accepted() -> None:
    assert Route("/p", functools.partial(other), frozenset({"GET"})).match("/p") == {}
