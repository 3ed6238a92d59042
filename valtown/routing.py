# Websocket routes; the live-log consumer joins here.
websocket_urlpatterns = []
