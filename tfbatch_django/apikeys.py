"""API keys: how clients that cannot hold a session (TF Serving and Triton clients,
scripts, other services) authenticate as a Django user.

A key is sent as ``Authorization: Bearer <key>`` or ``X-API-Key: <key>`` on every door
(the Django views, the fast door, the WebSocket handshake); the request then runs as
the key's user, and ``PERMISSION`` decides as for a logged-in user. Keys are made in
the admin ("API keys": pick a user and a name; the key is shown once) or in code with
``ApiKey.issue(user, name)``.

Only a SHA-256 digest of each key is stored. A key is 32 random bytes (256 bits), so a
slow password hash buys nothing (nobody can enumerate the key space) and would cost
every request its time; a stolen table still gives no usable key. A key stops working
when it is deactivated or deleted, when it expires, or when its user is deactivated.
"""

from __future__ import annotations

import hashlib
import secrets
from typing import Any

from django.conf import settings
from django.db import models
from django.utils import timezone

__all__ = ["KEY_PREFIX", "ApiKey"]

#: Every key starts with this, so a leaked one is recognisable (secret scanners, logs).
KEY_PREFIX = "tfb_"


def digest(key: str) -> str:
    return hashlib.sha256(key.encode("utf-8", "surrogatepass")).hexdigest()


class ApiKey(models.Model):
    user = models.ForeignKey(settings.AUTH_USER_MODEL, on_delete=models.CASCADE, related_name="tfbatch_api_keys")
    name = models.CharField(max_length=100, help_text="What the key is for, e.g. the client or service using it.")
    prefix = models.CharField(max_length=12, editable=False, help_text="The key's first characters, to recognise it.")
    hashed = models.CharField(max_length=64, unique=True, editable=False)
    created = models.DateTimeField(auto_now_add=True)
    expires = models.DateTimeField(null=True, blank=True, help_text="Optional: the key stops working then.")
    is_active = models.BooleanField(default=True, help_text="Untick to revoke the key.")

    class Meta:
        verbose_name = "API key"
        verbose_name_plural = "API keys"

    def __str__(self) -> str:
        return f"{self.name} ({self.prefix}…)"

    @classmethod
    def issue(cls, user: Any, name: str, **fields: Any) -> tuple[ApiKey, str]:
        """A new key for ``user``: the saved row and the key itself (never stored: show it once)."""
        row = cls(user=user, name=name, **fields)
        key = row.assign_new_key()
        row.save()
        return row, key

    def assign_new_key(self) -> str:
        """Give an unsaved row (the admin's add form) its key; returns the key."""
        key = KEY_PREFIX + secrets.token_urlsafe(32)
        self.prefix, self.hashed = key[:12], digest(key)
        return key

    @classmethod
    def user_for(cls, key: str) -> Any | None:
        """The active user of an active, unexpired key; None for anything else."""
        if not key.startswith(KEY_PREFIX) or len(key) > 200:
            return None
        row = (
            cls.objects.select_related("user")
            .filter(hashed=digest(key), is_active=True)
            .filter(models.Q(expires__isnull=True) | models.Q(expires__gt=timezone.now()))
            .first()
        )
        if row is None or not getattr(row.user, "is_active", True):  # custom user models may lack the field
            return None
        return row.user
