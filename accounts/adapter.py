from allauth.account.adapter import DefaultAccountAdapter
from django import forms

from accounts.models import User, validate_username


class AccountAdapter(DefaultAccountAdapter):
    def clean_username(self, username, shallow=False):
        try:
            validate_username(username)
        except forms.ValidationError as error:
            raise forms.ValidationError(error.messages[0]) from None
        if not shallow and User.username_taken(username):
            raise forms.ValidationError("That username is taken.")
        return super().clean_username(username, shallow=shallow)
