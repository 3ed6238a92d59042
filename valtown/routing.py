from vals.evaluations.routing import websocket_urlpatterns as evaluation_routes

websocket_urlpatterns = [*evaluation_routes]
