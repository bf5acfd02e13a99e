"""The admin panel in a real browser (Debian's Chromium, driven by Playwright), through Envoy: root
signs in, finds a user, changes the user's tier and the user's next REST request gets that tier's
limit, deletes a post, replays a dead job that then succeeds, signs out and is refused.

With SCREENSHOTS_DIR set, the dashboard and the users view are saved there as PNG files (the
README's, made by `SCREENSHOTS_DIR=docs/images make test`)."""

from __future__ import annotations

import os
from collections.abc import AsyncIterator
from pathlib import Path

import pytest
from playwright.async_api import Browser, Page, async_playwright, expect

from meshplate_testing.browser import chromium
from meshplate_testing.smtp import Mailbox

from .conftest import Stack, StartWorker, until
from .identity import ADMIN, bearer, log_in, sign_up

TIMEOUT_MS = 10_000


@pytest.fixture
async def browser() -> AsyncIterator[Browser]:
    path, why = chromium()
    if path is None:
        pytest.skip(why)
    async with async_playwright() as playwright:
        launched = await playwright.chromium.launch(executable_path=path, headless=True)
        try:
            yield launched
        finally:
            await launched.close()


async def _row_action(page: Page, pk: str, action: str, submit: str) -> None:
    """Click a row's action, then the confirmation's button."""
    await page.locator(f'tr[data-sa-pk="{pk}"] a[data-sa-name="{action}"]').click()
    button = page.locator("#actionSubmit")
    await expect(button).to_be_visible(timeout=TIMEOUT_MS)
    await expect(button).to_have_text(submit)
    await button.click()


async def _screenshot(page: Page, name: str) -> None:
    if folder := os.environ.get("SCREENSHOTS_DIR"):
        await page.screenshot(path=str(Path(folder) / name), full_page=True)


async def test_an_operator_walks_the_panel(
    stack: Stack, browser: Browser, start_worker: StartWorker, mailbox: Mailbox
) -> None:
    # The relay refuses one welcome e-mail for good (root's or ann's): a dead job to replay.
    mailbox.refuse(550, times=1)
    await start_worker()
    async with stack.client() as client:
        ann = await sign_up(client, "ann")
        await sign_up(client, "bob")
        ann_token, _refresh = await log_in(client, "ann")
        root_token, _refresh = await log_in(client, *ADMIN)
        gold = await client.post("/api/v1/tier", json={"name": "gold"}, headers=bearer(root_token))
        await client.post(
            "/api/v1/tier/gold/rate_limit",
            json={"path": "/api/v1/user/me/", "limit": 77, "period": 60},
            headers=bearer(root_token),
        )
        post = await client.post(
            "/api/v1/ann/post",
            json={"title": "Hello", "text": "A post to delete"},
            headers=bearer(ann_token),
        )
        before = await client.get("/api/v1/user/me/", headers=bearer(ann_token))

    page = await browser.new_page(viewport={"width": 1280, "height": 800})
    page.set_default_timeout(TIMEOUT_MS)

    # Signing in.
    await page.goto(f"{stack.base_url}/admin/")
    await page.fill('input[name="username"]', ADMIN[0])
    await page.fill('input[name="password"]', ADMIN[1])
    await page.click('button[type="submit"]')
    await expect(page.locator('[data-check="users"]')).to_have_text("ok")
    await _screenshot(page, "admin-dashboard.png")

    # Finding ann, and moving her to gold.
    await page.goto(f"{stack.base_url}/admin/users/list")
    await expect(page.locator("tr[data-sa-pk]")).to_have_count(3)  # root, ann, bob
    await _screenshot(page, "admin-users.png")
    await page.fill('input[name="q"], input[type="search"]', "ann")
    await page.keyboard.press("Enter")
    await expect(page.locator(f'tr[data-sa-pk="{ann["id"]}"]')).to_be_visible()
    await expect(page.locator("tr[data-sa-pk]")).to_have_count(1)
    await page.locator(f'tr[data-sa-pk="{ann["id"]}"] a[data-sa-name="change_tier"]').click()
    await page.select_option("#tier_id", str(gold.json()["id"]))
    await page.locator("#actionSubmit").click()
    await expect(page.get_by_text("Tier changed.")).to_be_visible()
    await expect(
        page.locator(f'tr[data-sa-pk="{ann["id"]}"] td[data-column="tier"]')
    ).to_contain_text("gold")

    # Deleting her post.
    await page.goto(f"{stack.base_url}/admin/posts/list?q=ann")
    await _row_action(page, f"ann-{post.json()['id']}", "delete", "Yes, delete")
    await expect(page.locator(f'tr[data-sa-pk="ann-{post.json()["id"]}"]')).to_have_count(0)

    # Replaying the dead job.
    async def dead_letter() -> bool:
        await page.goto(f"{stack.base_url}/admin/dead-letters/list")
        return await page.locator("tr[data-sa-pk]").count() == 1

    await until(dead_letter)
    pk = await page.locator("tr[data-sa-pk]").first.get_attribute("data-sa-pk")
    assert pk is not None
    await _row_action(page, pk, "replay", "Replay")

    async def mailed() -> bool:
        return len(mailbox.messages) == 2

    await until(mailed)

    # Signing out: the panel is closed to this browser again.
    await page.goto(f"{stack.base_url}/admin/")
    await page.locator('header [data-bs-toggle="dropdown"]').first.click()
    await page.get_by_role("button", name="Logout").click()
    await expect(page.locator('input[name="password"]')).to_be_visible()
    await page.goto(f"{stack.base_url}/admin/users/list")
    await expect(page.locator('input[name="password"]')).to_be_visible()
    signed_out_url = page.url

    async with stack.client() as client:
        after = await client.get("/api/v1/user/me/", headers=bearer(ann_token))
        deleted = await client.get(f"/api/v1/ann/post/{post.json()['id']}")

    assert before.headers["x-ratelimit-limit"] != "77"
    assert after.headers["x-ratelimit-limit"] == "77"
    assert deleted.status_code == 404
    assert "/admin/login" in signed_out_url
