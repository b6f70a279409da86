"""Route templates and the trie: literals beat params, 405 knows the allowed methods."""

from __future__ import annotations

import pytest

from arcana.paths import Match, PathTemplate, PathTemplateError, RouteTrie


def _trie(*routes: tuple[str, str]) -> RouteTrie[str]:
    trie: RouteTrie[str] = RouteTrie()
    for method, path in routes:
        assert trie.add(method, PathTemplate.parse(path), f"{method} {path}") is None
    return trie


def test_params_are_extracted_and_percent_decoded() -> None:
    found = _trie(("GET", "/notes/{id}/tags/{tag}")).match("GET", "/notes/4%202/tags/a%2Fb")
    assert isinstance(found, Match) and found.params == {"id": "4 2", "tag": "a/b"}


def test_literal_segment_wins_over_parameter() -> None:
    trie = _trie(("GET", "/notes/{id}"), ("GET", "/notes/export"))
    assert isinstance(m := trie.match("GET", "/notes/export"), Match) and m.target == "GET /notes/export"
    assert isinstance(m := trie.match("GET", "/notes/7"), Match) and m.params == {"id": "7"}


def test_backtracks_from_a_literal_dead_end_to_a_parameter() -> None:
    trie = _trie(("GET", "/a/b/c"), ("GET", "/a/{x}/d"))
    assert isinstance(m := trie.match("GET", "/a/b/d"), Match) and m.params == {"x": "b"}


def test_wrong_method_returns_allowed_methods_and_unknown_path_none() -> None:
    trie = _trie(("GET", "/x"), ("PUT", "/x"))
    assert trie.match("DELETE", "/x") == {"GET", "PUT"}
    assert trie.match("GET", "/y") is None
    assert trie.match("GET", "/x/") is None


def test_head_falls_back_to_get() -> None:
    assert isinstance(_trie(("GET", "/x")).match("HEAD", "/x"), Match)


def test_same_shape_with_other_param_names_is_a_collision() -> None:
    trie = _trie(("GET", "/n/{id}"))
    taken = trie.add("GET", PathTemplate.parse("/n/{key}"), "other")
    assert taken is not None and taken[1] == "GET /n/{id}"


@pytest.mark.parametrize("bad", ["notes", "/a//b", "/a/{b", "/a/{1x}", "/a/{x}/{x}", "/a/b c"])
def test_invalid_templates_are_refused(bad: str) -> None:
    with pytest.raises(PathTemplateError):
        PathTemplate.parse(bad)
