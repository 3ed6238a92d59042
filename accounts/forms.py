from django import forms

from accounts.models import User


class ProfileForm(forms.ModelForm):
    class Meta:
        model = User
        fields = ["bio"]
        widgets = {"bio": forms.Textarea(attrs={"rows": 3, "maxlength": 300})}
