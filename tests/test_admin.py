"""The dashboard in the admin: its index entry, who may open it, and what it shows.

The figures are checked against the batcher's own counters after a workload whose
batches are known exactly (see ``tests.monitoring.workloads``).
"""

from __future__ import annotations

import re
from collections.abc import Iterator

import pytest
from django.contrib.auth.models import Permission, User
from django.test import Client, override_settings
from django.urls import reverse

from tests.monitoring.workloads import EXPECTED_HISTOGRAM, EXPECTED_MODEL_CALLS, GATED, known_workload
from tfbatch_django import get_stats
from tfbatch_django.monitoring.publisher import Publisher
from tfbatch_django.monitoring.views import latency_text

DASHBOARD = reverse("admin:tfbatch_django_dashboard_changelist")
LIVE = reverse("admin:tfbatch_django_dashboard_live")
DATA = reverse("admin:tfbatch_django_dashboard_data")


@pytest.fixture(autouse=True)
def gated() -> Iterator[None]:
    with override_settings(TFBATCH=GATED):
        yield


@pytest.fixture
def users(db: None) -> dict[str, User]:
    viewer = User.objects.create_user("viewer", is_staff=True)
    viewer.user_permissions.add(
        Permission.objects.get(codename="view_dashboard", content_type__app_label="tfbatch_django")
    )
    return {
        "superuser": User.objects.create_superuser("root"),
        "viewer": viewer,
        "staff": User.objects.create_user("staff", is_staff=True),
        "member": User.objects.create_user("member"),
    }


def client_for(user: User | None) -> Client:
    client = Client()
    if user is not None:
        client.force_login(user)
    return client


@pytest.mark.parametrize("url", [DASHBOARD, LIVE, DATA])
def test_anonymous_and_non_staff_users_are_sent_to_the_login_page(users, url):
    for user in (None, users["member"]):
        response = client_for(user).get(url)
        assert response.status_code == 302
        assert response["Location"].startswith(reverse("admin:login") + "?next=")
    # The admin's way of refusing a logged-in non-staff user: its login page says so.
    login = client_for(users["member"]).get(url, follow=True).content.decode()
    assert "You are authenticated as member, but are not authorized to access this page" in login


@pytest.mark.parametrize("url", [DASHBOARD, LIVE, DATA])
def test_staff_without_the_permission_are_refused(users, url):
    assert client_for(users["staff"]).get(url).status_code == 403


@pytest.mark.parametrize("who", ["viewer", "superuser"])
@pytest.mark.parametrize("url", [DASHBOARD, LIVE, DATA])
def test_staff_with_the_permission_get_in(users, who, url):
    assert client_for(users[who]).get(url).status_code == 200


def test_admin_index_lists_the_dashboard_for_those_who_may_see_it(users):
    assert DASHBOARD in client_for(users["viewer"]).get(reverse("admin:index")).content.decode()
    assert DASHBOARD not in client_for(users["staff"]).get(reverse("admin:index")).content.decode()


def test_page_has_breadcrumbs_and_no_add_or_change_views(users):
    page = client_for(users["superuser"]).get(DASHBOARD).content.decode()
    assert 'href="/admin/tfbatch_django/"' in page  # breadcrumb to the app's admin index
    assert "Batching dashboard" in page
    assert "tfbatch_django/dashboard.js" in page
    assert client_for(users["superuser"]).get(DASHBOARD + "add/").status_code == 404


def figure(html: str, name: str, model: str = "gated") -> str:
    """The text of ``data-figure=name`` inside the model's card."""
    card = re.search(rf'<section class="module tfb-model" data-model="{model}">(.*?)</section>', html, re.S)
    assert card, f"no card for {model}"
    match = re.search(rf'data-figure="{name}">([^<]*)<', card.group(1))
    assert match, f"no figure {name}"
    return match.group(1).strip()


def test_page_and_json_equal_the_batchers_counters_after_a_known_workload(users):
    model = known_workload()
    assert model.sizes == EXPECTED_MODEL_CALLS
    Publisher().publish()
    expected = get_stats()["gated"]
    assert expected["batch_size_histogram"] == EXPECTED_HISTOGRAM  # the workload did what it promises

    client = client_for(users["viewer"])
    data = client.get(DATA).json()
    shown = data["models"]["gated"]
    for key in (
        "requests", "rows", "completed", "batches", "padding_rows", "rejected", "invalid", "timeouts", "cancelled",
        "errors", "mean_batch_size", "padding_share", "batch_size_histogram", "queue_depth", "latency_ms",
        "histograms",
    ):  # fmt: skip
        assert shown[key] == expected[key], key
    assert (shown["requests"], shown["batches"], shown["padding_rows"]) == (100, 11, 1)
    assert shown["status"] == "ready"
    assert shown["processes"] == 1
    assert [p["models"]["gated"]["requests"] for p in data["processes"]] == [100]

    for url in (DASHBOARD, LIVE):
        html = client.get(url).content.decode()
        assert figure(html, "requests") == "100"
        assert figure(html, "completed") == "100"
        assert figure(html, "rows") == "100"
        assert figure(html, "batches") == "11"
        assert figure(html, "mean_batch_size") == str(expected["mean_batch_size"])  # 9.091
        assert figure(html, "padding_share") == "1%"
        assert figure(html, "status") == "ready"
        e2e = expected["latency_ms"]["end_to_end"]
        row = re.search(r'<tr data-latency="2">(.*?)</tr>', html, re.S)
        assert row is not None
        cells = re.findall(r"<td>([^<]*)</td>", row.group(1))
        assert cells[3:6] == [latency_text(e2e["p50_ms"]), latency_text(e2e["p95_ms"]), latency_text(e2e["p99_ms"])]
        assert all(len(cell.replace(",", "").replace(".", "").lstrip("0")) <= 3 for cell in cells), cells


def test_the_page_refreshes_every_dashboard_refresh_seconds(users):
    with override_settings(TFBATCH={"MODELS": {}, "DASHBOARD_REFRESH_SECONDS": 7}):
        client = client_for(users["viewer"])
        html = client.get(DASHBOARD).content.decode()
        settings = client.get(DATA).json()["settings"]
    assert 'data-refresh-seconds="7.0"' in html  # what the page's script reads
    assert "Refreshes every 7 s" in html
    assert settings["refresh_seconds"] == 7.0
