from django.contrib import admin

from vals.models import Like, Val, ValVersion


class ValVersionInline(admin.TabularInline):
    model = ValVersion
    fields = ["number", "created_at"]
    readonly_fields = ["number", "created_at"]
    extra = 0
    can_delete = False
    show_change_link = False

    def has_add_permission(self, request, obj=None):
        return False


@admin.register(Val)
class ValAdmin(admin.ModelAdmin):
    list_display = ["name", "owner", "type", "privacy", "version", "like_count", "created_at"]
    list_filter = ["type", "privacy"]
    search_fields = ["name", "owner__username"]
    raw_id_fields = ["owner", "forked_from"]
    readonly_fields = ["code", "version", "like_count", "forked_from_version"]
    inlines = [ValVersionInline]


admin.site.register(Like)
