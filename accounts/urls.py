from django.urls import path
from django.views.generic import RedirectView

from accounts import views

urlpatterns = [
    path("u/<str:username>", views.profile, name="profile"),
    path("settings/", RedirectView.as_view(pattern_name="settings_profile"), name="settings"),
    path("settings/profile", views.settings_profile, name="settings_profile"),
    path("settings/tokens", views.settings_tokens, name="settings_tokens"),
    path("settings/tokens/<int:token_id>/revoke", views.revoke_token, name="revoke_token"),
]
