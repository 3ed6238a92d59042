from django.contrib import messages
from django.contrib.auth.decorators import login_required
from django.shortcuts import get_object_or_404, redirect, render
from django.views.decorators.http import require_GET, require_http_methods

from datetime import timedelta

from django.utils import timezone
from django.views.decorators.http import require_POST

from accounts.forms import ApiTokenForm, ProfileForm
from accounts.models import ApiToken, User


@require_GET
def profile(request, username):
    person = get_object_or_404(User, username__iexact=username, is_active=True)
    vals = person.vals.listed_for(request.user).newest()
    is_owner = request.user == person
    context = {
        "person": person,
        "is_owner": is_owner,
        "public_vals": [val for val in vals if val.privacy == "public"],
        "unlisted_vals": [val for val in vals if val.privacy == "unlisted"] if is_owner else [],
        "private_vals": [val for val in vals if val.privacy == "private"] if is_owner else [],
    }
    return render(request, "accounts/profile.html", context)


@login_required
@require_http_methods(["GET", "POST"])
def settings_profile(request):
    form = ProfileForm(request.POST or None, instance=request.user)
    if request.method == "POST" and form.is_valid():
        form.save()
        messages.success(request, "Your profile is saved.")
        return redirect("settings_profile")
    return render(request, "accounts/settings_profile.html", {"form": form})


@login_required
@require_http_methods(["GET", "POST"])
def settings_tokens(request):
    form = ApiTokenForm(request.POST or None)
    new_token = None
    if request.method == "POST" and form.is_valid():
        days = form.cleaned_data["expires_in_days"]
        expires_at = timezone.now() + timedelta(days=days) if days else None
        _, new_token = ApiToken.issue(request.user, form.cleaned_data["name"], form.cleaned_data["scope"], expires_at)
        form = ApiTokenForm()
    context = {"form": form, "tokens": request.user.api_tokens.all(), "new_token": new_token}
    return render(request, "accounts/settings_tokens.html", context)


@login_required
@require_POST
def revoke_token(request, token_id):
    token = get_object_or_404(ApiToken, pk=token_id, user=request.user)
    token.delete()
    messages.success(request, f"Revoked the token “{token.name}”.")
    return redirect("settings_tokens")
