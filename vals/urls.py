from django.urls import path, re_path

from vals import blob_views, email_views, module_host, views

VAL = r"(?P<username>[A-Za-z0-9_-]+)/(?P<name>[A-Za-z_][A-Za-z0-9_]*)"

urlpatterns = [
    path("", views.home, name="home"),
    path("new", views.new_val, name="new_val"),
    re_path(r"^std/(?P<name>[a-z]+)(?:\.ts)?$", views.std_module, name="std_module"),
    re_path(rf"^v/{VAL}\.ts$", module_host.val_module, name="val_raw"),
    re_path(rf"^v/{VAL}$", views.val_page, name="val"),
    re_path(rf"^v/{VAL}/history$", views.val_history, name="val_history"),
    re_path(rf"^v/{VAL}/diff$", views.val_diff, name="val_diff"),
    path("vals/<int:val_id>/save", views.val_save, name="val_save"),
    path("vals/<int:val_id>/revert/<int:number>", views.val_revert, name="val_revert"),
    path("vals/<int:val_id>/delete", views.val_delete, name="val_delete"),
    path("vals/<int:val_id>/fork", views.val_fork, name="val_fork"),
    path("vals/<int:val_id>/like", views.val_like, name="val_like"),
    path("email/inbound", email_views.inbound_email, name="inbound_email"),
    path("settings/blobs", blob_views.blobs_page, name="blobs"),
    path("settings/blobs/<int:blob_id>/delete", blob_views.delete_blob, name="delete_blob"),
    path("vals/<int:val_id>/schedule", views.val_schedule, name="val_schedule"),
]
