"""The dashboard in Chromium: a staff member watches the figures move after a burst.

One daphne process serves a fake model and two real TensorFlow SavedModels (TF
Serving's test exports): one loads, the other fails to load in any TensorFlow, and the
page must say so. The screenshot is saved under the test's temporary folder.
"""

from __future__ import annotations

from playwright.sync_api import expect, sync_playwright

from tests.browser import launch

from .servers import DASHBOARD, PASSWORD, USERNAME, daphne_servers
from .workloads import wait_for


def test_staff_sees_live_figures_change_after_a_burst(tmp_path):
    with daphne_servers(tmp_path, 1, models="tensorflow") as ([server], _):

        def settled() -> bool:
            stats = server.get_json("/local-stats/")
            return stats["half_plus_two"]["status"] == "ready" and stats["half_plus_three"]["status"] == "failed"

        wait_for(settled, 120, "TensorFlow models to load (and one to fail)", interval=0.5)

        with sync_playwright() as playwright:
            browser = launch(playwright)
            try:
                page = browser.new_page(viewport={"width": 1400, "height": 1000})
                page.goto(server.url(DASHBOARD))
                assert "/admin/login/" in page.url  # anonymous: the login page first
                page.fill("#id_username", USERNAME)
                page.fill("#id_password", PASSWORD)
                page.click("input[type=submit]")
                page.wait_for_url(server.url(DASHBOARD))

                double = page.locator('section.tfb-model[data-model="double"]')
                ready = page.locator('section.tfb-model[data-model="half_plus_two"]')
                failed = page.locator('section.tfb-model[data-model="half_plus_three"]')
                expect(double.locator('[data-figure="requests"]')).to_have_text("0")
                expect(ready.locator('[data-figure="status"]')).to_have_text("ready")
                expect(ready.locator('[data-figure="signature"]')).to_have_text("serving_default")
                expect(ready.locator('[data-figure="device"]')).to_contain_text("CPU")
                expect(failed.locator('[data-figure="status"]')).to_have_text("failed")
                expect(failed.locator('[data-figure="error"]')).to_contain_text("half_plus_three")
                page.evaluate("window.notReloaded = true")

                assert server.get_json("/burst/double/?n=40")["ok"] == 40
                assert server.get_json("/burst/half_plus_two/?n=24&width=1")["ok"] == 24

                expect(double.locator('[data-figure="requests"]')).to_have_text("40", timeout=20_000)
                expect(ready.locator('[data-figure="requests"]')).to_have_text("24", timeout=20_000)
                expect(double.locator('[data-figure="batches"]')).not_to_have_text("0")
                expect(page.locator('[data-figure="live-processes"]')).to_have_text("1")
                assert page.evaluate("window.notReloaded") is True  # refreshed in place
                assert page.locator("#tfbatch-refresh-status").text_content() == ""
                # Latencies with three significant figures at most (not 6.0887).
                cells = ready.locator('tr[data-latency="2"] td').all_text_contents()
                assert all(len(c.replace(",", "").replace(".", "").lstrip("0")) <= 3 for c in cells), cells
                assert ready.locator('[data-axis="y"]').first.text_content().startswith("↑ 0 \u2013 ")
                page.screenshot(path=str(tmp_path / "dashboard.png"), full_page=True)
                # The process table fits the page, also in a narrower window: the page
                # never scrolls sideways (a table too wide scrolls inside its own box).
                for width in (1400, 1024):
                    page.set_viewport_size({"width": width, "height": 1000})
                    overflow = page.evaluate("document.documentElement.scrollWidth - window.innerWidth")
                    assert overflow <= 0, (width, overflow)
                    table = page.locator(".tfb-processes table").bounding_box()
                    box = page.locator(".tfb-processes").bounding_box()
                    assert table is not None and box is not None
                    if width == 1400:
                        assert table["x"] + table["width"] <= box["x"] + box["width"] + 1
                page.screenshot(path=str(tmp_path / "dashboard-1024.png"), full_page=True)
            finally:
                browser.close()
        assert (tmp_path / "dashboard.png").stat().st_size > 10_000
