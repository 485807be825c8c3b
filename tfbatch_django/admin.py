"""The batching dashboard's entry in the project's own ``admin.site``.

django-rq's pattern: an unmanaged model (``Dashboard``) gives the admin index an entry,
breadcrumbs and a ``view`` permission, and its "changelist" is the dashboard. Staff
need ``tfbatch_django.view_dashboard`` (superusers have it); the admin sends anonymous
and non-staff users to its login page, and refuses staff without the permission (403).
"""

from __future__ import annotations

from collections.abc import Callable
from typing import TYPE_CHECKING, Any

from django.contrib import admin, messages
from django.core.exceptions import PermissionDenied
from django.http import HttpRequest, HttpResponse
from django.urls import URLPattern, path

from .models import ApiKey, Dashboard
from .monitoring import views

if TYPE_CHECKING:
    _ModelAdmin = admin.ModelAdmin[Dashboard]
else:
    _ModelAdmin = admin.ModelAdmin


@admin.register(Dashboard)
class DashboardAdmin(_ModelAdmin):
    """No add, change or delete: the model only carries the page and its permission."""

    def has_add_permission(self, request: HttpRequest) -> bool:
        return False

    def has_change_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        return False

    def has_delete_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        return False

    def get_urls(self) -> list[URLPattern]:
        prefix = f"{self.opts.app_label}_{self.opts.model_name}"
        return [
            path("", self._guard(self.dashboard_view), name=f"{prefix}_changelist"),
            path("live/", self._guard(views.live), name=f"{prefix}_live"),
            path("data.json", self._guard(views.data), name=f"{prefix}_data"),
        ]

    def _guard(self, view: Callable[[HttpRequest], HttpResponse]) -> Callable[[HttpRequest], HttpResponse]:
        def guarded(request: HttpRequest) -> HttpResponse:
            if not self.has_view_permission(request):
                raise PermissionDenied
            return view(request)

        return self.admin_site.admin_view(guarded)

    def dashboard_view(self, request: HttpRequest) -> HttpResponse:
        context = {
            **self.admin_site.each_context(request),
            "opts": self.opts,
            "title": "Batching dashboard",
            "has_view_permission": True,
        }
        return views.dashboard(request, context)


if TYPE_CHECKING:
    _KeyAdmin = admin.ModelAdmin[ApiKey]
else:
    _KeyAdmin = admin.ModelAdmin


@admin.register(ApiKey)
class ApiKeyAdmin(_KeyAdmin):
    """API keys for clients without a session (see ``tfbatch_django.apikeys``).

    A new key is shown once, in the message after saving: only its digest is stored.
    """

    list_display = ("name", "user", "prefix", "created", "expires", "is_active")
    list_filter = ("is_active",)
    search_fields = ("name", "prefix", "user__username")
    fields = ("user", "name", "expires", "is_active", "prefix", "created")
    readonly_fields = ("prefix", "created")
    raw_id_fields = ("user",)

    def save_model(self, request: HttpRequest, obj: ApiKey, form: Any, change: bool) -> None:
        key = None if change else obj.assign_new_key()
        super().save_model(request, obj, form, change)
        if key is not None:
            messages.success(
                request,
                f"The new API key is {key} — copy it now: only its digest is stored, so it cannot be shown again. "
                "Clients send it as 'Authorization: Bearer <key>' or 'X-API-Key: <key>'.",
            )
