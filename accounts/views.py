from django.contrib import messages
from django.contrib.auth.decorators import login_required
from django.shortcuts import get_object_or_404, redirect, render
from django.views.decorators.http import require_GET, require_http_methods

from accounts.forms import ProfileForm
from accounts.models import User


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
