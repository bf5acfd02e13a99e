"""Rate-limit rules in the panel, per tier: create, edit, delete, with their path templates (`*` is
the tier's default). The same ratelimit RPCs as the REST rule routes; a rule change governs the
very next request on every ratelimit replica."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from pydantic import ValidationError
from starlette.requests import Request
from starlette_admin import EnumField, IntegerField, StringField
from starlette_admin.exceptions import ActionFailed, FormValidationError

from gateway.admin.problems import SHOWN, as_message, describe, field_of
from gateway.admin.views.remote import RemoteView, int_pk, users_client
from gateway.admin.views.users import tier_names
from gateway.clients import RateLimitClient
from gateway.schemas import RateLimitCreate, RateLimitRead, RateLimitUpdate

_FORM_FIELDS = {"path": "path", "limit": "limit", "period_s": "period", "name": "name"}


@dataclass(frozen=True)
class RuleRow:
    """A rule as the panel shows it; `key` names it with its tier (`<tier id>-<rule id>`)."""

    key: str
    id: int
    tier: str
    path: str
    limit: int
    period: int
    name: str
    algorithm: str

    def __admin_repr__(self, request: Request) -> str:
        return f"{self.tier}: {self.path}"


def _limits(request: Request) -> RateLimitClient:
    client: RateLimitClient = request.state.ratelimit
    return client


def _row(rule: RateLimitRead, tiers: dict[int, str]) -> RuleRow:
    return RuleRow(
        key=f"{rule.tier_id}-{rule.id}",
        id=rule.id,
        tier=tiers.get(rule.tier_id, f"#{rule.tier_id}"),
        path=rule.path,
        limit=rule.limit,
        period=rule.period,
        name=rule.name,
        algorithm=rule.algorithm,
    )


def _parse_key(pk: Any) -> tuple[int, int] | None:
    tier, _, rule = str(pk).partition("-")
    tier_id, rule_id = int_pk(tier), int_pk(rule)
    return None if tier_id is None or rule_id is None else (tier_id, rule_id)


class RulesView(RemoteView):
    """Every tier's rules."""

    key = "rules"
    menu_label = "Rate limits"
    icon = "fa fa-gauge-high"
    pk_attr = "key"
    fields = (
        IntegerField("id", label="Id", exclude_from_create=True, exclude_from_edit=True),
        StringField("tier", required=True, exclude_from_edit=True, help_text="The tier's name"),
        StringField(
            "path", required=True, help_text="A path or template, e.g. /api/v1/{username}/post"
        ),
        IntegerField("limit", required=True, help_text="Requests per period"),
        IntegerField("period", required=True, help_text="Seconds"),
        StringField("name"),
        EnumField(
            "algorithm",
            choices=(("sliding_window", "Sliding window"), ("fixed_window", "Fixed window")),
        ),
    )

    async def page(
        self, request: Request, number: int, size: int, q: str | None
    ) -> tuple[Sequence[Any], int]:
        # Tiers are few and each has few rules: all of them, then the page.
        tiers = await tier_names(request)
        rows: list[RuleRow] = []
        for tier_id in sorted(tiers):
            rows += [_row(rule, tiers) for rule in await _limits(request).all_rules(tier_id)]
        return rows[(number - 1) * size : number * size], len(rows)

    async def record(self, request: Request, pk: Any) -> Any:
        if (ids := _parse_key(pk)) is None:
            return None
        return _row(await _limits(request).get_rule(*ids), await tier_names(request))

    async def create(self, request: Request, data: dict[str, Any]) -> Any:
        try:
            body = RateLimitCreate(
                path=data["path"],
                limit=data["limit"],
                period=data["period"],
                name=data.get("name") or None,
                algorithm=data.get("algorithm") or None,
            )
            tier = await users_client(request).get_tier(name=str(data["tier"]))
        except ValidationError as exc:
            raise _form_errors(exc) from None
        except SHOWN as exc:
            raise FormValidationError({"tier": describe(exc)}) from None
        try:
            rule = await _limits(request).create_rule(tier.id, body)
        except SHOWN as exc:
            raise FormValidationError({_field(exc): describe(exc)}) from None
        return _row(rule, await tier_names(request))

    async def edit(self, request: Request, pk: Any, data: dict[str, Any]) -> Any:
        if (ids := _parse_key(pk)) is None:
            raise ActionFailed("No such rule.")
        try:
            body = RateLimitUpdate(
                path=data.get("path"),
                limit=data.get("limit"),
                period=data.get("period"),
                name=data.get("name") or None,
                algorithm=data.get("algorithm") or None,
            )
            await _limits(request).update_rule(*ids, body)
        except ValidationError as exc:
            raise _form_errors(exc) from None
        except SHOWN as exc:
            raise FormValidationError({_field(exc): describe(exc)}) from None
        return await self.find_by_pk(request, pk)

    async def delete(self, request: Request, pks: list[Any]) -> int | None:
        for pk in pks:
            if (ids := _parse_key(pk)) is None:
                raise ActionFailed("No such rule.")
            with as_message():
                await _limits(request).delete_rule(*ids)
        return len(pks)


def _field(exc: Any) -> str:
    """The form field a ratelimit error names (its request fields are named differently)."""
    return _FORM_FIELDS.get(field_of(exc) or "", "path")


def _form_errors(exc: ValidationError) -> FormValidationError:
    return FormValidationError(
        {str(error["loc"][0]): error["msg"] for error in exc.errors() if error["loc"]}
    )
