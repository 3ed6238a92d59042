"""The user's own std/blob store, seen and tidied from their settings."""

from django.conf import settings
from django.contrib import messages
from django.contrib.auth.decorators import login_required
from django.core.paginator import Paginator
from django.shortcuts import get_object_or_404, redirect, render
from django.views.decorators.http import require_GET, require_POST

from vals.blob import Blob, BlobStore


@login_required
@require_GET
def blobs_page(request):
    store = BlobStore(request.user)
    blobs = Paginator(store.blobs.only("pk", "key", "size", "is_text", "updated_at"), 100).get_page(request.GET.get("page"))
    used, quota = store.usage(), settings.BLOB_QUOTA_BYTES
    context = {
        "blobs": blobs,
        "used": used,
        "quota": quota,
        "percent": min(100, round(100 * used / quota)) if quota else 100,
        "module_url": request.build_absolute_uri("/std/blob.ts"),
    }
    return render(request, "blobs/blobs.html", context)


@login_required
@require_POST
def delete_blob(request, blob_id):
    # By id rather than key: keys may hold "/", newlines, anything a URL or form mangles.
    blob = get_object_or_404(Blob, pk=blob_id, owner=request.user)
    blob.delete()
    messages.success(request, f"Deleted {blob.key[:120]}.")
    return redirect("blobs")
