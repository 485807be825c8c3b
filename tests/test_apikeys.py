"""API keys in the admin: a key is made there, shown once, stored as a digest (see
``tests/serving/test_auth.py`` for keys on every door)."""

from __future__ import annotations

import re

import pytest
from django.contrib.auth.models import User
from django.test import Client
from django.urls import reverse

from tfbatch_django.apikeys import ApiKey, digest


@pytest.mark.django_db
def test_the_admin_issues_a_key_and_shows_it_once():
    root = User.objects.create_superuser("root")
    alice = User.objects.create_user("alice")
    client = Client()
    client.force_login(root)
    add = reverse("admin:tfbatch_django_apikey_add")
    response = client.post(add, {"user": alice.pk, "name": "batch job", "is_active": "on"}, follow=True)
    assert response.status_code == 200
    [key] = re.findall(r"The new API key is (tfb_[\w-]+)", response.content.decode())
    row = ApiKey.objects.get()
    assert (row.user, row.name, row.hashed, row.prefix) == (alice, "batch job", digest(key), key[:12])
    assert ApiKey.user_for(key) == alice

    change = reverse("admin:tfbatch_django_apikey_change", args=[row.pk])
    page = client.get(change).content.decode()
    assert key not in page and row.prefix in page  # never shown again
    client.post(change, {"user": alice.pk, "name": "batch job"})  # is_active unticked: revoked
    assert ApiKey.user_for(key) is None
    assert ApiKey.objects.get().hashed == digest(key)  # editing does not re-key
