"""Rules and decisions: path normalisation, templates, rule resolution, the errors of ratelimit.

Paths are compared in the seed's sanitised form (`/api/v1/tasks/task` -> `api_v1_tasks_task`), so
`/api/v1/x`, `api/v1/x` and `api_v1_x` are one path. A rule's path may be a template
(`/api/v1/{username}/posts`): each `{name}` matches one path segment. The path `*` is a tier's
default rule. Resolution: the tier's rule for the exact path, else its most specific matching
template, else its default, else the global default.
"""

from __future__ import annotations

import re
from collections.abc import Iterable
from dataclasses import dataclass
from enum import Enum

from meshplate_core.errors import AlreadyExistsError, InvalidArgumentError, NotFoundError

DEFAULT_PATH = "*"
# Login attempts are counted under this path, with a rule of their own (from settings).
LOGIN_ATTEMPTS_PATH = "/api/v1/login/attempts"
_PARAM = re.compile(r"\{[a-z][a-z0-9]*\}")
_ALLOWED = re.compile(r"[A-Za-z0-9_\-.{}]+")
MAX_PATH_LENGTH = 255


class Algorithm(Enum):
    """How a rule counts."""

    SLIDING_WINDOW = "sliding_window"
    FIXED_WINDOW = "fixed_window"


@dataclass(frozen=True, slots=True)
class Rule:
    """`limit` requests per `period_s` seconds for a tier on a path (or the tier's default)."""

    id: int
    tier_id: int
    name: str
    path: str
    limit: int
    period_s: int
    algorithm: Algorithm

    @property
    def key(self) -> str:
        """The path in the sanitised form rules are matched in."""
        return path_key(self.path)


@dataclass(frozen=True, slots=True)
class Limit:
    """What governs one request: a rule (or the global default, `rule_id` None)."""

    rule_id: int | None
    key: str
    limit: int
    period_s: int
    algorithm: Algorithm


@dataclass(frozen=True, slots=True)
class Check:
    """One request to count: `hits` requests of `subject` (a tier's member, or not) on `path`."""

    subject: str
    tier_id: int | None
    path: str
    hits: int


@dataclass(frozen=True, slots=True)
class Decision:
    """The answer to one check."""

    allowed: bool
    limit: int
    remaining: int
    reset_s: int
    retry_after_s: int


class RuleNotFoundError(NotFoundError):
    """No rule of this tier has this id."""

    def __init__(self) -> None:
        super().__init__("Rate Limit not found")


class RuleTakenError(AlreadyExistsError):
    """The tier already has a rule for this path, or another rule has this name."""

    def __init__(self) -> None:
        super().__init__("Rate Limit for this tier and path, or this name, already exists")


def path_key(path: str) -> str:
    """The sanitised form of a path: no leading or trailing slash, `/` written `_`."""
    if path.strip() == DEFAULT_PATH:
        return DEFAULT_PATH
    return "_".join(part for part in path.strip().split("/") if part)


def normalize_path(path: str) -> str:
    """The canonical form a rule's path is stored in (`/api/v1/x`), or InvalidArgumentError."""
    if path.strip() == DEFAULT_PATH:
        return DEFAULT_PATH
    key = path_key(path)
    if (
        not key
        or len(key) + 1 > MAX_PATH_LENGTH
        or not _ALLOWED.fullmatch(key)
        or any(brace in _PARAM.sub("", key) for brace in "{}")
    ):
        raise InvalidArgumentError(
            "path must be a URL path such as /api/v1/users (or * for the tier's default)",
            field="path",
        )
    return "/" + key.replace("_", "/")


def check_bounds(*, limit: int, period_s: int) -> None:
    """Both at least 1."""
    if limit < 1:
        raise InvalidArgumentError("limit must be at least 1", field="limit")
    if period_s < 1:
        raise InvalidArgumentError("period must be at least 1 second", field="period")


def _template(key: str) -> re.Pattern[str] | None:
    if not _PARAM.search(key):
        return None
    pattern = "".join(
        "[^_]+" if _PARAM.fullmatch(part) else re.escape(part)
        for part in re.split(r"(\{[a-z][a-z0-9]*\})", key)
        if part
    )
    return re.compile(pattern)


class RuleBook:
    """One tier's rules, indexed for resolution."""

    def __init__(self, rules: Iterable[Rule]) -> None:
        self._exact: dict[str, Rule] = {}
        self._templates: list[tuple[int, re.Pattern[str], Rule]] = []
        self._default: Rule | None = None
        for rule in rules:
            if rule.key == DEFAULT_PATH:
                self._default = rule
            elif (pattern := _template(rule.key)) is not None:
                literal = len(_PARAM.sub("", rule.key))
                self._templates.append((literal, pattern, rule))
            else:
                self._exact[rule.key] = rule
        # Most specific template first: the one with the most literal characters.
        self._templates.sort(key=lambda entry: -entry[0])

    def find(self, key: str) -> Rule | None:
        """The rule governing a concrete path's key, if the tier has one."""
        if (rule := self._exact.get(key)) is not None:
            return rule
        for _literal, pattern, rule in self._templates:
            if pattern.fullmatch(key):
                return rule
        return self._default
