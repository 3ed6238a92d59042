import difflib
from pathlib import Path
from urllib.parse import urlencode

from django.contrib import messages
from django.contrib.auth.decorators import login_required
from django.core.exceptions import PermissionDenied, ValidationError
from django.core.paginator import Paginator
from django.http import Http404, HttpResponse
from django.shortcuts import get_object_or_404, redirect, render
from django.views.decorators.http import require_GET, require_http_methods, require_POST
from django_htmx.http import HttpResponseClientRedirect

from vals import source
from vals.forms import ScheduleForm, ValEditForm
from vals.models import Val, ValVersion
from vals.names import random_val_name

PAGE_SIZE = 30


def _get_val_for_viewer(request, username, name):
    """The val, if the viewer may see it. A private val of someone else is a plain 404."""
    val = Val.objects.named(username, name).select_related("owner", "forked_from__owner").first()
    if val is None or not val.is_visible_to(request.user):
        raise Http404("No such val.")
    return val


def _get_val_by_id_for_viewer(request, val_id):
    """The val a form posts to by id, if the viewer may reach it that way (an unlisted
    one's forms send its name too: Val.is_visible_by_id_to)."""
    val = get_object_or_404(Val.objects.select_related("owner"), pk=val_id)
    if not val.is_visible_by_id_to(request.user, request.POST.get("val")):
        raise Http404("No such val.")
    return val


def _get_val_by_id_for_owner(request, val_id):
    val = _get_val_by_id_for_viewer(request, val_id)
    if not val.is_owned_by(request.user):
        raise PermissionDenied("Only the val's owner can change it.")
    return val


def _requested_version(request, val):
    """The version named by ?v=N, or None for the latest."""
    number = request.GET.get("v")
    if number in (None, ""):
        return None
    if not number.isdigit():
        raise Http404("No such version.")
    try:
        return val.version_numbered(int(number))
    except ValVersion.DoesNotExist:
        raise Http404("No such version.") from None


@require_GET
def home(request):
    query = request.GET.get("q", "").strip()
    listed = Val.objects.listed_for(request.user).select_related("owner")
    if query:
        results = listed.search(query).newest()
        page = Paginator(results, PAGE_SIZE).get_page(request.GET.get("page"))
        context = {"query": query, "page": page, "pager_query": urlencode({"q": query})}
        if request.htmx:
            return render(request, "vals/_search_results.html", context)
        return render(request, "vals/search.html", context)
    context = {
        "newest": listed.public().newest()[:12],
        "most_liked": listed.public().most_liked()[:12],
    }
    return render(request, "vals/home.html", context)


@login_required
@require_POST
def new_val(request):
    val_type = request.POST.get("type", Val.Type.SCRIPT)
    if val_type not in Val.Type.values:
        val_type = Val.Type.SCRIPT
    val = Val.create(owner=request.user, name=Val.free_name(request.user, random_val_name()), type=val_type)
    return redirect(val)


def _val_page_context(request, val, old_version=None, form=None):
    is_owner = val.is_owned_by(request.user)
    if form is None and is_owner and old_version is None:
        form = ValEditForm.for_val(val)
    forks = val.forks_visible_to(request.user)
    return {
        "val": val,
        "old_version": old_version,
        "code": form["code"].value() if form is not None else (old_version or val).code,
        "is_owner": is_owner,
        "form": form,
        "liked": val.is_liked_by(request.user),
        "forks": forks[:20],
        "fork_count": forks.count(),
        "parent_visible": val.forked_from is not None and val.forked_from.is_visible_to(request.user),
        "takes_args": source.default_export_is_a_function(val.code),
        **_cron_context(request, val),
    }


def _render_val_page(request, val, old_version=None, form=None, status=200):
    """The val's page: the context a save's fragment shares, and what only the page shows,
    the vals it imports and those that import it (queries a save needn't pay for)."""
    context = _val_page_context(request, val, old_version=old_version, form=form)
    context["imports"] = val.imports_visible_to(request.user)
    context["used_by"] = val.used_by_visible_to(request.user)
    return render(request, "vals/val.html", context, status=status)


def _cron_context(request, val, schedule_form=None):
    if val.type != Val.Type.CRON:
        return {}
    runs = val.evaluations.filter(trigger="cron").newest()[:10] if val.is_owned_by(request.user) else []
    return {"cron_runs": runs, "schedule_form": schedule_form or ScheduleForm(), "is_owner": val.is_owned_by(request.user)}


@require_GET
def val_page(request, username, name):
    val = _get_val_for_viewer(request, username, name)
    return _render_val_page(request, val, old_version=_requested_version(request, val))


@login_required
@require_POST
def val_save(request, val_id):
    val = _get_val_by_id_for_owner(request, val_id)
    form = ValEditForm(request.POST, val=val)
    if form.is_valid():
        try:
            created = form.save()
        except ValidationError as error:
            form.add_error(None, error)
    if form.errors:
        if request.htmx:
            return render(request, "vals/_save_result.html", {"form": form, "val": val}, status=200)
        val.refresh_from_db()
        return _render_val_page(request, val, form=form, status=400)
    val.refresh_from_db()
    if request.htmx:
        context = {**_val_page_context(request, val), "saved": True, "created": created}
        response = render(request, "vals/_save_result.html", context)
        response["HX-Trigger"] = "valSaved"
        response["HX-Replace-Url"] = val.get_absolute_url()
        return response
    messages.success(request, f"Saved version {val.version}." if created else "Saved.")
    return redirect(val)


@require_GET
def val_history(request, username, name):
    val = _get_val_for_viewer(request, username, name)
    versions = Paginator(val.versions.only("number", "created_at"), 50).get_page(request.GET.get("page"))
    return render(request, "vals/history.html", {"val": val, "versions": versions, "is_owner": val.is_owned_by(request.user)})


# Line pairs the diff's matcher may compare: difflib's cost grows with the product of
# the changed parts' lengths, so past this the changed part is shown as removed, then
# added, in one hunk, which costs time linear in its length.
DIFF_BUDGET = 1_000_000
DIFF_CONTEXT = 3


def _diff_rows(old_code, new_code):
    """Unified diff lines, each tagged for colouring."""
    old, new = old_code.splitlines(), new_code.splitlines()
    matcher = _Matcher(old, new)
    rows = []
    for group in matcher.get_grouped_opcodes(DIFF_CONTEXT):
        first, last = group[0], group[-1]
        rows.append({"kind": "hunk", "text": f"@@ -{_hunk_range(first[1], last[2])} +{_hunk_range(first[3], last[4])} @@"})
        for tag, i1, i2, j1, j2 in group:
            if tag == "equal":
                rows += [{"kind": "context", "text": " " + line} for line in old[i1:i2]]
                continue
            rows += [{"kind": "removed", "text": "-" + line} for line in old[i1:i2]]
            rows += [{"kind": "added", "text": "+" + line} for line in new[j1:j2]]
    return rows


def _hunk_range(start, stop):
    length = stop - start
    first = start + 1 if length else start
    return str(first) if length == 1 else f"{first},{length}"


class _Matcher(difflib.SequenceMatcher):
    """difflib's matcher over what changed between the common first and last lines, and
    only while that stays within DIFF_BUDGET."""

    def __init__(self, old, new):
        prefix = 0
        while prefix < min(len(old), len(new)) and old[prefix] == new[prefix]:
            prefix += 1
        suffix = 0
        while suffix < min(len(old), len(new)) - prefix and old[-1 - suffix] == new[-1 - suffix]:
            suffix += 1
        changed_old, changed_new = old[prefix : len(old) - suffix], new[prefix : len(new) - suffix]
        super().__init__(None, changed_old, changed_new)
        if len(changed_old) * len(changed_new) <= DIFF_BUDGET:
            middle = super().get_opcodes()
        else:
            middle = [("replace", 0, len(changed_old), 0, len(changed_new))]
        opcodes = [("equal", 0, prefix, 0, prefix)] if prefix else []
        opcodes += [(tag, i1 + prefix, i2 + prefix, j1 + prefix, j2 + prefix) for tag, i1, i2, j1, j2 in middle if (i1, j1) != (i2, j2) or tag != "equal"]
        if suffix:
            opcodes.append(("equal", len(old) - suffix, len(old), len(new) - suffix, len(new)))
        self.opcodes = opcodes or [("equal", 0, len(old), 0, len(new))]


@require_GET
def val_diff(request, username, name):
    val = _get_val_for_viewer(request, username, name)
    try:
        newer = int(request.GET.get("b", val.version))
        older = int(request.GET.get("a", max(newer - 1, 0)))
        old_version, new_version = val.version_numbered(older), val.version_numbered(newer)
    except (ValueError, ValVersion.DoesNotExist):
        raise Http404("No such version.") from None
    context = {
        "val": val,
        "old_version": old_version,
        "new_version": new_version,
        "rows": _diff_rows(old_version.code, new_version.code),
        "numbers": range(val.version, -1, -1),
    }
    return render(request, "vals/diff.html", context)


@login_required
@require_POST
def val_revert(request, val_id, number):
    val = _get_val_by_id_for_owner(request, val_id)
    try:
        _, created = val.revert_to(number)
    except ValVersion.DoesNotExist:
        raise Http404("No such version.") from None
    if created:
        messages.success(request, f"Reverted to version {number}, saved as version {val.version}.")
    else:
        messages.info(request, f"Version {number} is the same as the latest; nothing changed.")
    return redirect(val)


@login_required
@require_http_methods(["GET", "POST"])
def val_delete(request, val_id):
    val = _get_val_by_id_for_owner(request, val_id)
    if request.method == "POST":
        name = val.name
        val.delete()
        messages.success(request, f"Deleted {name}.")
        return redirect("profile", request.user.username)
    return render(request, "vals/delete.html", {"val": val})


@login_required
@require_POST
def val_fork(request, val_id):
    val = _get_val_by_id_for_viewer(request, val_id)
    fork = val.fork_for(request.user)
    messages.success(request, f"Forked {val} into {fork}.")
    if request.htmx:
        return HttpResponseClientRedirect(fork.get_absolute_url())
    return redirect(fork)


@login_required
@require_POST
def val_like(request, val_id):
    val = _get_val_by_id_for_viewer(request, val_id)
    if val.is_liked_by(request.user):
        val.unlike_by(request.user)
    else:
        val.like_by(request.user)
    if request.htmx:
        return render(request, "vals/_like_button.html", {"val": val, "liked": val.is_liked_by(request.user)})
    return redirect(val)


@login_required
@require_POST
def val_schedule(request, val_id):
    val = _get_val_by_id_for_owner(request, val_id)
    form = ScheduleForm(request.POST)
    if form.is_valid():
        val.set_schedule(form.cleaned_data["schedule"], paused=form.cleaned_data["paused"])
        if not request.htmx:
            messages.success(request, "Schedule saved.")
    elif not request.htmx:
        messages.error(request, " ".join(form.errors.get("schedule", ["That is not a schedule."])))
    if request.htmx:
        return render(request, "vals/_cron_panel.html", {"val": val, **_cron_context(request, val, form)})
    return redirect(val)


STD_DIR = Path(__file__).resolve().parent / "std"


@require_GET
def std_module(request, name):
    """The platform's standard library, served as TypeScript modules, at
    /std/<name>.ts only (see vals/module_host.py: one module, one URL)."""
    from vals.module_host import is_canonical  # it imports this module

    path = STD_DIR / f"{name}.ts"
    if not name.isidentifier() or not path.is_file() or not is_canonical(request, f"/std/{name}.ts"):
        raise Http404("No such module.")
    return HttpResponse(path.read_text(), content_type="application/typescript; charset=utf-8")
