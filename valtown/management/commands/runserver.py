"""`manage.py runserver`: daphne's, also listening on the module origin
(valtown/module_origin.py), so that the embedded default stays one command."""

from daphne.management.commands.runserver import Command as DaphneRunserver
from daphne.server import Server

from valtown import module_origin


class ServerWithModuleOrigin(Server):
    def __init__(self, *args, endpoints, **kwargs):
        super().__init__(*args, endpoints=[*endpoints, module_origin.endpoint()], **kwargs)


class Command(DaphneRunserver):
    server_cls = ServerWithModuleOrigin

    def inner_run(self, *args, **options):
        self.stdout.write(f"Serving modules to sandboxes at {module_origin.endpoint()}.\n")
        return super().inner_run(*args, **options)
