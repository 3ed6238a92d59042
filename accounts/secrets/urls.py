from django.urls import path

from accounts.secrets import views

urlpatterns = [
    path("settings/secrets", views.secrets_page, name="secrets"),
    path("settings/secrets/<str:name>/delete", views.delete_secret, name="delete_secret"),
]
