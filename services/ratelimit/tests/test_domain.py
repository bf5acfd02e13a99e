from __future__ import annotations

import pytest

from meshplate_core.errors import InvalidArgumentError
from ratelimit.domain import Algorithm, Rule, RuleBook, normalize_path, path_key


@pytest.mark.parametrize(
    "path", ["/api/v1/tasks/task", "api/v1/tasks/task", "api_v1_tasks_task", "/api//v1/tasks/task/"]
)
def test_the_three_spellings_name_one_path(path: str) -> None:
    assert normalize_path(path) == "/api/v1/tasks/task"
    assert path_key(path) == "api_v1_tasks_task"


@pytest.mark.parametrize("path", ["", "/", "/api/v1/a b", "/api/v1/ü", "x" * 300, "/api/v1/{Bad}"])
def test_malformed_paths_are_refused(path: str) -> None:
    with pytest.raises(InvalidArgumentError):
        normalize_path(path)


def _rule(rule_id: int, path: str) -> Rule:
    return Rule(rule_id, 1, f"r{rule_id}", normalize_path(path), 5, 60, Algorithm.SLIDING_WINDOW)


def test_exact_path_beats_template_beats_default() -> None:
    book = RuleBook(
        [
            _rule(1, "*"),
            _rule(2, "/api/v1/{username}/posts"),
            _rule(3, "/api/v1/ann/posts"),
            _rule(4, "/api/v1/{username}/{what}"),
        ]
    )

    assert book.find(path_key("/api/v1/ann/posts")).id == 3  # type: ignore[union-attr]
    assert book.find(path_key("/api/v1/bob/posts")).id == 2  # type: ignore[union-attr]
    assert book.find(path_key("/api/v1/bob/tier")).id == 4  # type: ignore[union-attr]
    assert book.find(path_key("/api/v1/users")).id == 1  # type: ignore[union-attr]


def test_a_template_parameter_matches_one_segment_only() -> None:
    book = RuleBook([_rule(2, "/api/v1/{username}/posts")])

    assert book.find(path_key("/api/v1/a/b/posts")) is None
    assert book.find(path_key("/api/v1/ann/posts/extra")) is None
