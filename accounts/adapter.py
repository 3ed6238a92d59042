from allauth.account.adapter import DefaultAccountAdapter
from allauth.core import context
from django import forms
from django.utils.http import url_has_allowed_host_and_scheme

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

    def is_safe_url(self, url):
        """?next= may only lead back into this site. allauth would also allow any host in
        ALLOWED_HOSTS, and a pattern like ".example.com" there covers HTTP vals' origins,
        where anyone can put up a page that looks like ours."""
        request = context.request
        return url_has_allowed_host_and_scheme(url, allowed_hosts={request.get_host()}, require_https=request.is_secure())
