import base64

import pytest

from services.kit.errors import PermissionDenied, Unauthenticated
from services.kit.identity import Channels, MtlsAuthenticator, OrgCredentials, SecretAuthenticator

CHANNELS = Channels.parse("mychannel=org1,org2;private=org2")
AUTH = SecretAuthenticator({"org1": "s1", "org2": "s2"}, CHANNELS)


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
