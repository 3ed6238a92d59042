from django.urls import path

from vals.evaluations.consumers import EvaluationLogConsumer, ValLogConsumer

websocket_urlpatterns = [
    path("ws/evaluations/<int:evaluation_id>", EvaluationLogConsumer.as_asgi()),
    path("ws/vals/<int:val_id>/logs", ValLogConsumer.as_asgi()),
]
