from django import forms

from accounts.secrets.models import MAX_VALUE_BYTES, validate_secret_name, validate_secret_value


class SecretForm(forms.Form):
    name = forms.CharField(max_length=128, validators=[validate_secret_name])
    value = forms.CharField(
        strip=False,
        widget=forms.Textarea(attrs={"rows": 2, "autocomplete": "off", "spellcheck": "false"}),
        validators=[validate_secret_value],
        help_text=f"At most {MAX_VALUE_BYTES // 1024} KB. It is encrypted and never shown again.",
    )

    def clean_name(self):
        return self.cleaned_data["name"].strip()
