from django.contrib import admin
from django.urls import include, path

from vals.api import api

urlpatterns = [
    path("admin/", admin.site.urls),
    path("accounts/", include("allauth.urls")),
    path("v1/", api.urls),
    path("", include("accounts.urls")),
    path("", include("accounts.secrets.urls")),
    path("", include("vals.evaluations.urls")),
    path("", include("vals.urls")),
]

handler404 = "vals.api.errors.page_not_found"
