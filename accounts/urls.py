from django.urls import path
from django.views.generic import RedirectView

from accounts import views

urlpatterns = [
    path("u/<str:username>", views.profile, name="profile"),
    path("settings/", RedirectView.as_view(pattern_name="settings_profile"), name="settings"),
    path("settings/profile", views.settings_profile, name="settings_profile"),
]
