"""The setup contract: the README's commands are the ones CI and newcomers run."""

import re
import tomllib
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent


def test_the_readme_gives_the_two_commands():
    readme = (ROOT / "README.md").read_text()
    assert "make run" in readme and "make test" in readme


def test_ci_runs_the_readme_test_command_on_both_databases():
    ci = (ROOT / ".ci" / "run").read_text()
    assert re.search(r"^make test$", ci, re.M)
    assert re.search(r"^DATABASE_URL=.*postgres.* make test$", ci, re.M)


def test_the_makefile_sets_up_before_running():
    makefile = (ROOT / "Makefile").read_text()
    assert re.search(r"^run: .*demo", makefile, re.M)
    assert re.search(r"^test: .*install", makefile, re.M)
    assert "loaddemo" in makefile and "migrate" in makefile


def test_dependencies_are_declared_with_ranges():
    project = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]
    declared = {re.split(r"[<>=\[]", dep)[0].lower(): dep for dep in project["dependencies"] + project["optional-dependencies"]["dev"]}
    for name in ["django", "django-htmx", "channels", "daphne", "django-allauth", "deno", "pytest-django"]:
        assert name in declared, name
        assert ">=" in declared[name] and "<" in declared[name], declared[name]


def test_deno_comes_from_the_python_package():
    import deno

    assert Path(deno.find_deno_bin()).exists()


def test_the_editor_bundle_is_committed_so_no_node_is_needed():
    bundles = list((ROOT / "static" / "vals").glob("codemirror-*.js"))
    assert len(bundles) == 1
    template = (ROOT / "templates" / "vals" / "val.html").read_text()
    assert bundles[0].name in template


def test_daphne_serves_the_asgi_application_and_the_module_origin():
    from daphne.management.commands.runserver import Command as DaphneRunserver
    from django.conf import settings
    from django.core.management import get_commands, load_command_class

    assert "daphne" in settings.INSTALLED_APPS
    assert settings.ASGI_APPLICATION == "valtown.asgi.application"
    runserver = load_command_class(get_commands()["runserver"], "runserver")
    assert isinstance(runserver, DaphneRunserver) and type(runserver).__module__ == "valtown.management.commands.runserver"


def test_demo_data_loads_once(db):
    from django.core.management import call_command

    from vals.models import Val

    call_command("loaddemo")
    call_command("loaddemo")
    assert Val.objects.filter(owner__username="demo").count() == 5
