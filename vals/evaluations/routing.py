from django.urls import path

from vals.evaluations.consumers import EvaluationLogConsumer

websocket_urlpatterns = [
    path("ws/evaluations/<int:evaluation_id>", EvaluationLogConsumer.as_asgi()),
]
