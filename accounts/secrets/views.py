from django.contrib import messages
from django.contrib.auth.decorators import login_required
from django.core.exceptions import ValidationError
from django.shortcuts import get_object_or_404, redirect, render
from django.views.decorators.http import require_http_methods, require_POST

from accounts.secrets.forms import SecretForm
from accounts.secrets.models import Secret


@login_required
@require_http_methods(["GET", "POST"])
def secrets_page(request):
    form = SecretForm(request.POST or None)
    if request.method == "POST" and form.is_valid():
        try:
            Secret.put(request.user, form.cleaned_data["name"], form.cleaned_data["value"])
        except ValidationError as error:
            form.add_error(None, error)
        else:
            messages.success(request, f"Saved {form.cleaned_data['name']}.")
            return redirect("secrets")
    secrets = request.user.secrets.only("name", "updated_at")
    return render(request, "secrets/secrets.html", {"form": form, "secrets": secrets})


@login_required
@require_POST
def delete_secret(request, name):
    secret = get_object_or_404(Secret, owner=request.user, name=name)
    secret.delete()
    messages.success(request, f"Deleted {name}.")
    return redirect("secrets")
