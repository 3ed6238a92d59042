from django.contrib import admin

from accounts.secrets.models import Secret


@admin.register(Secret)
class SecretAdmin(admin.ModelAdmin):
    # Values stay encrypted and out of sight, even for staff.
    list_display = ["name", "owner", "updated_at"]
    fields = ["owner", "name", "updated_at"]
    readonly_fields = ["owner", "name", "updated_at"]

    def has_add_permission(self, request):
        return False
