import pytest
from django.core.exceptions import ValidationError
from django.db import connection

from accounts.secrets.crypto import encrypt
from accounts.secrets.models import MAX_SECRETS_PER_USER, Redactor, Secret


def test_a_user_adds_a_secret_and_never_sees_its_value_again(alice_client, alice):
    response = alice_client.post("/settings/secrets", {"name": "API_KEY", "value": "sk-live-abcdef123456"})
    assert response.status_code == 302
    page = alice_client.get("/settings/secrets").content.decode()
    assert "API_KEY" in page
    assert "sk-live-abcdef123456" not in page
    assert Secret.objects.get(owner=alice, name="API_KEY").value == "sk-live-abcdef123456"


def test_values_are_encrypted_at_rest(alice):
    Secret.put(alice, "TOKEN", "plain-text-never-stored")
    with connection.cursor() as cursor:
        cursor.execute("SELECT encrypted_value FROM secrets_secret")
        (stored,) = cursor.fetchone()
    assert "plain-text-never-stored" not in stored
    assert stored.startswith("gAAAA")  # a Fernet token


def test_a_secret_can_be_replaced_and_deleted(alice_client, alice):
    alice_client.post("/settings/secrets", {"name": "TOKEN", "value": "first"})
    alice_client.post("/settings/secrets", {"name": "TOKEN", "value": "second"})
    assert Secret.objects.get(owner=alice, name="TOKEN").value == "second"
    alice_client.post("/settings/secrets/TOKEN/delete")
    assert not Secret.objects.filter(owner=alice).exists()


def test_nobody_can_delete_someone_elses_secret(bob_client, alice):
    Secret.put(alice, "TOKEN", "value")
    assert bob_client.post("/settings/secrets/TOKEN/delete").status_code == 404
    assert Secret.objects.filter(owner=alice).exists()


@pytest.mark.parametrize("bad_name", ["lower", "1STARTS_WITH_DIGIT", "HAS-DASH", "HAS SPACE", ""])
def test_secret_names_look_like_environment_variables(alice_client, alice, bad_name):
    response = alice_client.post("/settings/secrets", {"name": bad_name, "value": "v"})
    assert response.status_code == 200
    assert not Secret.objects.filter(owner=alice).exists()


def test_a_value_over_32_kb_is_refused_with_the_limit_named(alice_client, alice):
    response = alice_client.post("/settings/secrets", {"name": "BIG", "value": "x" * (32 * 1024 + 1)})
    assert "at most 32 KB" in response.content.decode()
    assert not Secret.objects.filter(owner=alice).exists()


def test_a_user_has_at_most_100_secrets(alice):
    for n in range(MAX_SECRETS_PER_USER):
        Secret.put(alice, f"S{n}", "v")
    with pytest.raises(ValidationError):
        Secret.put(alice, "ONE_MORE", "v")
    Secret.put(alice, "S0", "replacing is fine")


def test_secrets_need_a_login(anonymous_client):
    assert anonymous_client.get("/settings/secrets").status_code == 302


def test_the_redactor_masks_values_in_text_and_json():
    redactor = Redactor(["hunter22", "sk-123456", "ab"])
    assert redactor.text("pw=hunter22 key=sk-123456 ab") == "pw=**** key=**** ab"
    assert redactor.value({"hunter22": ["x sk-123456", 1, None]}) == {"****": ["x ****", 1, None]}


@pytest.mark.parametrize("name", ["HTTP_PROXY", "HTTPS_PROXY", "ALL_PROXY", "NO_PROXY", "NODE_USE_ENV_PROXY"])
def test_a_secret_may_not_be_named_after_a_proxy_variable(alice_client, alice, name):
    # Deno would take a proxy from it, and the proxy variables are denied to vals.
    response = alice_client.post("/settings/secrets", {"name": name, "value": "socks5://localhost:1080"})

    assert response.status_code == 200
    assert f"{name} can&#x27;t be a secret&#x27;s name" in response.content.decode()
    assert not Secret.objects.filter(owner=alice).exists()


def test_a_secret_saved_under_a_proxy_variable_before_it_was_refused_is_left_out_of_vals(alice):
    Secret.objects.create(owner=alice, name="HTTPS_PROXY", encrypted_value=encrypt("socks5://localhost:1080"))
    Secret.put(alice, "TOKEN", "value")

    assert Secret.objects.filter(owner=alice).environment() == {"TOKEN": "value"}
