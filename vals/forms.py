from django import forms
from django.conf import settings
from django.core.exceptions import ValidationError
from django.db import transaction

from vals.models import Val, validate_code_size
from vals.names import validate_val_name
from vals.schedules import parse_schedule


class ValEditForm(forms.Form):
    """Everything the owner edits on the val page, saved together."""

    name = forms.CharField(max_length=200, validators=[validate_val_name])
    type = forms.ChoiceField(choices=Val.Type.choices)
    privacy = forms.ChoiceField(choices=Val.Privacy.choices)
    readme = forms.CharField(required=False, widget=forms.Textarea)
    # No max_length here: an oversized val gets the size error with the limit named.
    code = forms.CharField(required=False, strip=False, widget=forms.Textarea)

    def __init__(self, *args, val, **kwargs):
        self.val = val
        super().__init__(*args, **kwargs)

    @classmethod
    def for_val(cls, val):
        initial = {"name": val.name, "type": val.type, "privacy": val.privacy, "readme": val.readme, "code": val.code}
        return cls(initial=initial, val=val)

    def clean_name(self):
        name = self.cleaned_data["name"]
        if Val.name_taken(self.val.owner, name, exclude_pk=self.val.pk):
            raise ValidationError(f"You already have a val named “{name}”.")
        return name

    def clean_code(self):
        code = self.cleaned_data.get("code", "")
        validate_code_size(code)
        return code

    def clean_readme(self):
        readme = self.cleaned_data.get("readme", "")
        limit = settings.VAL_MAX_README_BYTES
        if len(readme.encode("utf-8")) > limit:
            raise ValidationError(f"The readme is too long; the limit is {limit // 1024} KB.")
        return readme

    def save(self):
        """Apply the edits; a changed code makes a new version. Returns whether it did."""
        val = self.val
        data = self.cleaned_data
        with transaction.atomic():
            if data["name"] != val.name:
                val.rename(data["name"])
            type_changed = data["type"] != val.type
            val.type, val.privacy, val.readme = data["type"], data["privacy"], data["readme"]
            val.save(update_fields=["type", "privacy", "readme", "updated_at"])
            if type_changed:
                val.type_changed()
            _, created = val.save_version(data["code"])
        return created



class ScheduleForm(forms.Form):
    schedule = forms.CharField(max_length=100)
    paused = forms.BooleanField(required=False)

    def clean_schedule(self):
        return parse_schedule(self.cleaned_data["schedule"]).text
