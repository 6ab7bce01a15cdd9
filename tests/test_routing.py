"""Path templates, :class:`Route` and :class:`Router` — pure functions, no event loop."""

from __future__ import annotations

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
