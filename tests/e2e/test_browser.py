"""A real browser (Debian's Chromium, driven by Playwright) draws a digit on the demo page
and gets the model's prediction over the WebSocket."""

from __future__ import annotations

import json
from collections.abc import Iterator
from typing import Any

import numpy as np
import pytest

from tests.browser import launch


@pytest.fixture(scope="module")
def page(daphne: Any) -> Iterator[Any]:
    from playwright.sync_api import sync_playwright

    with sync_playwright() as playwright:
        browser = launch(playwright)
        try:
            page = browser.new_page()
            page.set_default_timeout(30_000)
            page.goto(daphne.http + "/")
            page.wait_for_selector('#status[data-state="open"]')
            yield page
        finally:
            browser.close()


def draw_seven(page: Any) -> None:
    box = page.locator("#pad").bounding_box()
    x, y = box["x"], box["y"]
    page.mouse.move(x + 70, y + 60)
    page.mouse.down()
    for i in range(1, 11):
        page.mouse.move(x + 70 + i * 14, y + 60)
    for i in range(1, 13):
        page.mouse.move(x + 210 - i * 8, y + 60 + i * 15)
    page.mouse.up()


def test_drawing_a_digit_shows_the_models_prediction(page, direct_model):
    draw_seven(page)
    page.wait_for_selector('#prediction[data-state="done"]')
    sent = np.array(json.loads(page.locator("#seen").get_attribute("data-pixels")), np.float32)
    probabilities = direct_model(sent[None])[0]
    assert page.text_content("#prediction") == str(int(np.argmax(probabilities)))
    assert page.locator("#probabilities li").count() == 10
    assert "ran in a batch of" in page.text_content("#batch-info")


def test_a_burst_reports_the_batch_sizes_it_ran_in(page):
    page.fill("#burst-n", "64")
    page.click("#burst")
    page.wait_for_selector('#burst-result[data-state="done"]')
    assert page.text_content("#burst-result").startswith("64 answers, 0 errors")
    rows = [[int(c) for c in row.split("\t")] for row in page.inner_text("#burst-sizes tbody").splitlines()]
    assert sum(count for _, count in rows) == 64
    assert max(size for size, _ in rows) > 1
