from asgiref.sync import sync_to_async
from django.contrib.auth.decorators import login_required
from django.core.paginator import Paginator
from django.http import Http404
from django.shortcuts import get_object_or_404, render
from django.views.decorators.http import require_GET, require_POST

from vals.evaluations import runner
from vals.evaluations.arguments import parse_args
from vals.evaluations.models import Evaluation
from vals.models import Val
from vals.views import _get_val_for_viewer


@require_POST
async def val_run(request, val_id):
    user = await request.auser()
    if not user.is_authenticated:
        return await sync_to_async(render)(request, "evaluations/_run_error.html", {"error": "Log in to run vals."})
    val = await Val.objects.select_related("owner").filter(pk=val_id).afirst()
    if val is None or not val.is_visible_by_id_to(user, request.POST.get("val")):
        raise Http404("No such val.")
    args, error = parse_args(request.POST.get("args"))
    version = request.POST.get("version", "")
    if not error and version and not (version.isdigit() and await val.versions.filter(number=int(version)).aexists()):
        error = "That version of the val does not exist."
    if error:
        return await sync_to_async(render)(request, "evaluations/_run_error.html", {"error": error})
    try:
        # The version the viewer saw, so an author can't swap the code between view and Run.
        evaluation = await runner.start(user, val, args, version=int(version) if version else None)
    except runner.TooManyRuns as busy:
        return await sync_to_async(render)(request, "evaluations/_run_error.html", {"error": str(busy)})
    return await sync_to_async(render)(request, "evaluations/_run_panel.html", {"evaluation": evaluation, "val": val})


FILTERS = ("val", "status", "trigger")


@login_required
@require_GET
def evaluation_list(request):
    evaluations = Evaluation.objects.made_as(request.user).select_related("val__owner").newest()
    chosen = {name: request.GET.get(name, "") for name in FILTERS}
    if chosen["val"].isdigit():
        evaluations = evaluations.filter(val_id=int(chosen["val"]))
    if chosen["status"] in Evaluation.Status.values:
        evaluations = evaluations.filter(status=chosen["status"])
    if chosen["trigger"] in Evaluation.Trigger.values:
        evaluations = evaluations.filter(trigger=chosen["trigger"])
    page = Paginator(evaluations.defer("logs", "result", "args"), 50).get_page(request.GET.get("page"))
    run_vals = (
        Val.objects.visible_to(request.user).filter(evaluations__principal=request.user).select_related("owner").distinct().order_by("name")
    )
    context = {
        "page": page,
        "chosen": chosen,
        "vals": run_vals,
        "statuses": Evaluation.Status.choices,
        "triggers": Evaluation.Trigger.choices,
        "query": "&".join(f"{k}={v}" for k, v in chosen.items() if v),
    }
    template = "evaluations/_evaluation_rows.html" if request.htmx else "evaluations/evaluation_list.html"
    return render(request, template, context)


@login_required
@require_GET
def evaluation_detail(request, evaluation_id):
    evaluation = get_object_or_404(Evaluation.objects.select_related("val__owner"), pk=evaluation_id)
    if not evaluation.is_visible_to(request.user):
        raise Http404("No such evaluation.")
    return render(request, "evaluations/evaluation_detail.html", {"evaluation": evaluation})


@require_GET
def val_evaluations(request, username, name):
    """The val page's Evaluations tab: the viewer's own runs of this val."""
    val = _get_val_for_viewer(request, username, name)
    evaluations = Evaluation.objects.none()
    if request.user.is_authenticated:
        evaluations = val.evaluations.made_as(request.user).newest().defer("logs", "result", "args")
    page = Paginator(evaluations, 50).get_page(request.GET.get("page"))
    return render(request, "evaluations/val_evaluations.html", {"val": val, "page": page})
