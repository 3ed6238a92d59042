from django.urls import path, re_path

from vals.evaluations import views
from vals.urls import VAL

urlpatterns = [
    path("vals/<int:val_id>/run", views.val_run, name="val_run"),
    re_path(rf"^v/{VAL}/evaluations$", views.val_evaluations, name="val_evaluations"),
    path("settings/evaluations", views.evaluation_list, name="evaluations"),
    path("evaluations/<int:evaluation_id>", views.evaluation_detail, name="evaluation"),
]
