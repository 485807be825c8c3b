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
                page.screenshot(path=str(tmp_path / "dashboard.png"), full_page=True)
            finally:
                browser.close()
        assert (tmp_path / "dashboard.png").stat().st_size > 10_000
