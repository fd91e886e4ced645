import base64
import hashlib
import json

import pytest

from services.kit.errors import PermissionDenied, Unauthenticated
from services.kit.identity import (
    Channels,
    MtlsAuthenticator,
    OrgCredentials,
    SecretAuthenticator,
    load_own_secret,
    load_verifiers,
    secret_verifier,
)
from services.kit.server import authenticator_from, credentials_from
from services.kit.settings import CommonSettings, SettingsError
from tools.devnet.credentials import write_org_credentials

CHANNELS = Channels.parse("mychannel=org1,org2;private=org2")
AUTH = SecretAuthenticator({"org1": secret_verifier("s1"), "org2": secret_verifier("s2")}, CHANNELS)


def _metadata(org, secret, **extra):
    return dict(OrgCredentials(org_id=org, secret=secret).metadata(), **extra)


def test_the_organization_comes_from_the_credential():
    caller = AUTH.authenticate(_metadata("org2", "s2"), {})
    assert (caller.org_id, caller.channel) == ("org2", "mychannel")


def test_a_requested_channel_is_used_when_the_organization_is_a_member():
    caller = AUTH.authenticate(_metadata("org2", "s2", **{"x-tessera-channel": "private"}), {})
    assert caller.channel == "private"


def test_a_channel_the_organization_is_not_in_is_refused():
    with pytest.raises(PermissionDenied):
        AUTH.authenticate(_metadata("org1", "s1", **{"x-tessera-channel": "private"}), {})


@pytest.mark.parametrize(
    "metadata",
    [
        {},
        {"authorization": "Bearer s1"},
        {"authorization": "Basic !!!"},
        {"authorization": "Basic " + base64.b64encode(b"org1:wrong").decode()},
        {"authorization": "Basic " + base64.b64encode(b"org9:s1").decode()},
        # a valid secret presented under another organization's name
        {"authorization": "Basic " + base64.b64encode(b"org2:s1").decode()},
        # the verifier itself is not a credential
        {"authorization": "Basic " + base64.b64encode(f"org1:{secret_verifier('s1')}".encode()).decode()},
        {"authorization": "Basic " + base64.b64encode(b"org1:").decode()},
    ],
)
def test_missing_or_wrong_credentials_are_unauthenticated(metadata):
    with pytest.raises(Unauthenticated):
        AUTH.authenticate(metadata, {})


def test_the_user_header_is_carried_for_audit_only():
    caller = AUTH.authenticate(_metadata("org1", "s1", **{"x-tessera-user": "alice"}), {})
    assert (caller.org_id, caller.user) == ("org1", "alice")


def test_mtls_takes_the_organization_from_the_certificate_common_name():
    auth = MtlsAuthenticator(CHANNELS)
    assert auth.authenticate({}, {"x509_common_name": [b"org1"]}).org_id == "org1"
    with pytest.raises(Unauthenticated):
        auth.authenticate({"authorization": "Basic " + base64.b64encode(b"org1:s1").decode()}, {})


def test_empty_channel_configuration_is_one_channel_of_every_known_organization():
    channels = Channels.parse("", ["a", "b"])
    assert channels.of("a") == ["mychannel"]
    assert channels.members("mychannel") == ("a", "b")


def test_a_verifier_is_the_sha256_of_the_secret_as_sha256sum_prints_it():
    assert secret_verifier("s1") == "sha256:" + hashlib.sha256(b"s1").hexdigest()
    assert secret_verifier("s1") != secret_verifier("s2")


def test_the_verifiers_file_is_read_and_a_file_of_secrets_is_refused(tmp_path):
    path = tmp_path / "verifiers.json"
    path.write_text(json.dumps({"org1": secret_verifier("s1"), "org2": secret_verifier("s2")}))
    assert SecretAuthenticator(load_verifiers(str(path)), CHANNELS).authenticate(_metadata("org1", "s1"), {})
    path.write_text(json.dumps({"org1": "s1", "org2": secret_verifier("s2")}))
    with pytest.raises(ValueError, match="org1 are not verifiers"):
        load_verifiers(str(path))
    path.write_text(json.dumps({"org1": secret_verifier("same"), "org2": secret_verifier("same")}))
    with pytest.raises(ValueError, match="share one secret"):
        load_verifiers(str(path))


def test_an_own_secret_shorter_than_a_random_token_is_refused(tmp_path):
    path = tmp_path / "org.secret"
    path.write_text("f" * 64 + "\n")
    assert load_own_secret(str(path)) == "f" * 64
    path.write_text("password123")
    with pytest.raises(ValueError, match="at least 32 characters"):
        load_own_secret(str(path))


def test_a_process_whose_secret_does_not_match_its_verifier_fails_at_start(tmp_path):
    files = write_org_credentials(tmp_path, {"org1": "a" * 32, "org2": "b" * 32})
    settings = CommonSettings(org_id="org1", **files.settings("org1"))
    assert credentials_from(settings).secret == "a" * 32
    files.secret_files["org1"].write_text("c" * 32)
    with pytest.raises(SettingsError, match="does not match the verifier of org1"):
        credentials_from(settings)
    files.secret_files["org1"].write_text("short")
    with pytest.raises(SettingsError, match=r"TESSERA_ORG_SECRET_FILE: .* at least 32 characters"):
        credentials_from(settings)


def test_a_server_in_secret_mode_without_verifiers_fails_at_start():
    with pytest.raises(SettingsError, match="TESSERA_ORG_VERIFIERS_FILE is required"):
        authenticator_from(CommonSettings(auth_mode="secret"))
