"""Kafka SASL/TLS settings: each protocol's exact client config, one-line errors, Faust credentials.

TLS files are real PEM certificates made by trustme; the contexts are checked by a real
in-memory TLS handshake against a server that trusts only the test CA.
"""

from __future__ import annotations

import ssl

import faust
import pytest
import trustme
from faust.transport.drivers.aiokafka import credentials_to_aiokafka_auth
from faust.types.auth import AuthProtocol, SASLMechanism

from streams.kafka_config import confluent_config, faust_credentials, ssl_context
from streams.settings import SettingsError, load_settings

BOOT = "kafka-1:9093,kafka-2:9093"


@pytest.fixture(scope="module")
def pki(tmp_path_factory: pytest.TempPathFactory) -> dict[str, object]:
    """A CA, a broker certificate for kafka-1 and a client certificate with its key, as PEM files."""
    root = tmp_path_factory.mktemp("pki")
    ca = trustme.CA()
    client = ca.issue_cert("monitor@example.com")
    paths = {"ca": root / "ca.pem", "cert": root / "client.pem", "key": root / "client.key"}
    ca.cert_pem.write_to_path(str(paths["ca"]))
    client.cert_chain_pems[0].write_to_path(str(paths["cert"]))
    client.private_key_pem.write_to_path(str(paths["key"]))
    return {"ca_obj": ca, **{k: str(v) for k, v in paths.items()}}


def sasl_env(protocol: str = "SASL_SSL", **extra: str) -> dict[str, str]:
    return {"KAFKA_BOOTSTRAP_SERVERS": BOOT, "KAFKA_SECURITY_PROTOCOL": protocol,
            "KAFKA_SASL_USERNAME": "monitor", "KAFKA_SASL_PASSWORD": "s3cret pw", **extra}


# --- confluent-kafka configs, exact ---

def test_plaintext_is_exactly_what_the_local_stack_always_used():
    assert confluent_config(load_settings({"KAFKA_BOOTSTRAP_SERVERS": BOOT})) == {"bootstrap.servers": BOOT}
    assert confluent_config(load_settings({})) == {"bootstrap.servers": "127.0.0.1:9092"}


def test_bootstrap_override_keeps_the_security_settings():
    config = confluent_config(load_settings(sasl_env("SASL_PLAINTEXT")), bootstrap="other:9092")
    assert config["bootstrap.servers"] == "other:9092"
    assert config["security.protocol"] == "SASL_PLAINTEXT"


@pytest.mark.parametrize("mechanism", ["PLAIN", "SCRAM-SHA-256", "SCRAM-SHA-512"])
def test_sasl_plaintext(mechanism):
    settings = load_settings(sasl_env("SASL_PLAINTEXT", KAFKA_SASL_MECHANISM=mechanism.lower()))
    assert confluent_config(settings) == {
        "bootstrap.servers": BOOT, "security.protocol": "SASL_PLAINTEXT",
        "sasl.mechanism": mechanism, "sasl.username": "monitor", "sasl.password": "s3cret pw",
    }


def test_sasl_mechanism_defaults_to_plain():
    assert confluent_config(load_settings(sasl_env("SASL_SSL")))["sasl.mechanism"] == "PLAIN"


def test_sasl_ssl_with_a_private_ca(pki):
    settings = load_settings(sasl_env("SASL_SSL", KAFKA_SASL_MECHANISM="SCRAM-SHA-256", KAFKA_SSL_CAFILE=pki["ca"]))
    assert confluent_config(settings) == {
        "bootstrap.servers": BOOT, "security.protocol": "SASL_SSL",
        "sasl.mechanism": "SCRAM-SHA-256", "sasl.username": "monitor", "sasl.password": "s3cret pw",
        "ssl.ca.location": pki["ca"],
    }


def test_sasl_ssl_with_the_system_cas():
    assert confluent_config(load_settings(sasl_env("SASL_SSL"))) == {
        "bootstrap.servers": BOOT, "security.protocol": "SASL_SSL",
        "sasl.mechanism": "PLAIN", "sasl.username": "monitor", "sasl.password": "s3cret pw",
    }


def test_ssl_with_a_client_certificate(pki):
    settings = load_settings({"KAFKA_BOOTSTRAP_SERVERS": BOOT, "KAFKA_SECURITY_PROTOCOL": "ssl",
                              "KAFKA_SSL_CAFILE": pki["ca"], "KAFKA_SSL_CERTFILE": pki["cert"],
                              "KAFKA_SSL_KEYFILE": pki["key"]})
    assert confluent_config(settings) == {
        "bootstrap.servers": BOOT, "security.protocol": "SSL", "ssl.ca.location": pki["ca"],
        "ssl.certificate.location": pki["cert"], "ssl.key.location": pki["key"],
    }


def test_the_password_is_not_in_the_settings_repr():
    assert "s3cret" not in repr(load_settings(sasl_env("SASL_PLAINTEXT")))


# --- one-line errors ---

@pytest.mark.parametrize(("env", "message"), [
    ({"KAFKA_SECURITY_PROTOCOL": "SASL_SSL", "KAFKA_SASL_USERNAME": "monitor"},
     "KAFKA_SASL_PASSWORD='' is not valid: expected a non-empty value when KAFKA_SECURITY_PROTOCOL is SASL_SSL"),
    ({"KAFKA_SECURITY_PROTOCOL": "SASL_PLAINTEXT", "KAFKA_SASL_USERNAME": "monitor", "KAFKA_SASL_PASSWORD": " "},
     "KAFKA_SASL_PASSWORD=' ' is not valid: expected a non-empty value when KAFKA_SECURITY_PROTOCOL is SASL_PLAINTEXT"),
    ({"KAFKA_SECURITY_PROTOCOL": "SASL_PLAINTEXT", "KAFKA_SASL_PASSWORD": "pw"},
     "KAFKA_SASL_USERNAME='' is not valid: expected a non-empty value when KAFKA_SECURITY_PROTOCOL is SASL_PLAINTEXT"),
    ({"KAFKA_SASL_USERNAME": "monitor", "KAFKA_SASL_PASSWORD": "pw"},
     "KAFKA_SECURITY_PROTOCOL='PLAINTEXT' is not valid: expected SASL_PLAINTEXT or SASL_SSL when "
     "KAFKA_SASL_USERNAME or KAFKA_SASL_PASSWORD is set"),
    ({"KAFKA_SECURITY_PROTOCOL": "TLS"},
     "KAFKA_SECURITY_PROTOCOL='TLS' is not valid: expected one of PLAINTEXT, SSL, SASL_PLAINTEXT, SASL_SSL"),
    ({"KAFKA_SASL_MECHANISM": "GSSAPI"},
     "KAFKA_SASL_MECHANISM='GSSAPI' is not valid: expected one of PLAIN, SCRAM-SHA-256, SCRAM-SHA-512"),
    ({"KAFKA_SECURITY_PROTOCOL": "SSL", "KAFKA_SSL_CAFILE": "/nonexistent/ca.pem"},
     "KAFKA_SSL_CAFILE='/nonexistent/ca.pem' is not valid: expected an existing file"),
])
def test_bad_security_settings_are_one_line(env, message):
    with pytest.raises(SettingsError) as caught:
        load_settings(env)
    assert str(caught.value) == message
    assert "\n" not in str(caught.value)


def test_tls_files_need_a_tls_protocol(pki):
    with pytest.raises(SettingsError, match=r"^KAFKA_SECURITY_PROTOCOL='SASL_PLAINTEXT' is not valid: "
                                            r"expected SSL or SASL_SSL when KAFKA_SSL_CAFILE is set$"):
        load_settings(sasl_env("SASL_PLAINTEXT", KAFKA_SSL_CAFILE=pki["ca"]))


def test_a_client_certificate_needs_its_key(pki):
    with pytest.raises(SettingsError, match=r"^KAFKA_SSL_KEYFILE='' is not valid: expected an existing file "
                                            r"when KAFKA_SSL_CERTFILE is set"):
        load_settings({"KAFKA_SECURITY_PROTOCOL": "SSL", "KAFKA_SSL_CERTFILE": pki["cert"]})
    with pytest.raises(SettingsError, match=r"^KAFKA_SSL_CERTFILE='' is not valid"):
        load_settings({"KAFKA_SECURITY_PROTOCOL": "SSL", "KAFKA_SSL_KEYFILE": pki["key"]})


def test_a_file_that_is_not_pem_stops_start_up_with_one_line(tmp_path, pki):
    junk = tmp_path / "junk.pem"
    junk.write_text("not a certificate\n")
    with pytest.raises(SettingsError) as caught:
        load_settings({"KAFKA_SECURITY_PROTOCOL": "SSL", "KAFKA_SSL_CAFILE": str(junk)})
    assert str(caught.value).startswith(f"KAFKA_SSL_CAFILE={str(junk)!r} is not valid: expected a PEM file of CA")
    assert "\n" not in str(caught.value)
    # A key that does not belong to the certificate (the CA's own cert with the client key).
    with pytest.raises(SettingsError) as caught:
        load_settings({"KAFKA_SECURITY_PROTOCOL": "SSL", "KAFKA_SSL_CERTFILE": pki["ca"],
                       "KAFKA_SSL_KEYFILE": pki["key"]})
    assert str(caught.value).startswith(f"KAFKA_SSL_CERTFILE={pki['ca']!r} is not valid: expected a PEM client")
    assert "\n" not in str(caught.value)


def test_no_error_ever_shows_the_password():
    for env in ({"KAFKA_SASL_PASSWORD": "s3cret"},
                {"KAFKA_SECURITY_PROTOCOL": "SASL_SSL", "KAFKA_SASL_PASSWORD": "s3cret"},
                {"KAFKA_SECURITY_PROTOCOL": "SSL", "KAFKA_SASL_PASSWORD": "s3cret", "KAFKA_SASL_USERNAME": "u"}):
        with pytest.raises(SettingsError) as caught:
            load_settings(env)
        assert "s3cret" not in str(caught.value)


# --- Faust (aiokafka) credentials ---

def test_plaintext_has_no_faust_credentials():
    assert faust_credentials(load_settings({})) is None


def test_sasl_plaintext_credentials():
    creds = faust_credentials(load_settings(sasl_env("SASL_PLAINTEXT", KAFKA_SASL_MECHANISM="SCRAM-SHA-512")))
    assert type(creds) is faust.SASLCredentials
    assert (creds.protocol, creds.mechanism) == (AuthProtocol.SASL_PLAINTEXT, SASLMechanism.SCRAM_SHA_512)
    assert (creds.username, creds.password, creds.ssl_context) == ("monitor", "s3cret pw", None)
    assert credentials_to_aiokafka_auth(creds) == {
        "security_protocol": "SASL_PLAINTEXT", "sasl_mechanism": "SCRAM-SHA-512",
        "sasl_plain_username": "monitor", "sasl_plain_password": "s3cret pw", "ssl_context": None,
    }


def test_sasl_ssl_credentials_carry_a_verifying_tls_context(pki):
    creds = faust_credentials(load_settings(sasl_env("SASL_SSL", KAFKA_SSL_CAFILE=pki["ca"])))
    assert type(creds) is faust.SASLCredentials
    assert (creds.protocol, creds.mechanism) == (AuthProtocol.SASL_SSL, SASLMechanism.PLAIN)
    context = creds.ssl_context
    assert isinstance(context, ssl.SSLContext)
    assert context.verify_mode == ssl.CERT_REQUIRED and context.check_hostname
    auth = credentials_to_aiokafka_auth(creds)
    assert (auth["security_protocol"], auth["sasl_mechanism"], auth["ssl_context"]) == ("SASL_SSL", "PLAIN", context)


def test_ssl_credentials(pki):
    creds = faust_credentials(load_settings({"KAFKA_SECURITY_PROTOCOL": "SSL", "KAFKA_SSL_CAFILE": pki["ca"]}))
    assert type(creds) is faust.SSLCredentials
    assert creds.protocol == AuthProtocol.SSL
    assert credentials_to_aiokafka_auth(creds) == {"security_protocol": "SSL", "ssl_context": creds.context}


def _handshake(client: ssl.SSLContext, server: ssl.SSLContext, hostname: str) -> ssl.SSLObject:
    """A real TLS handshake through memory buffers; raises ssl.SSLError when verification fails."""
    c_in, c_out, s_in, s_out = ssl.MemoryBIO(), ssl.MemoryBIO(), ssl.MemoryBIO(), ssl.MemoryBIO()
    c = client.wrap_bio(c_in, c_out, server_hostname=hostname)
    s = server.wrap_bio(s_in, s_out, server_side=True)
    done = {"c": False, "s": False}
    for _ in range(20):
        for name, side in (("c", c), ("s", s)):
            if not done[name]:
                try:
                    side.do_handshake()
                    done[name] = True
                except ssl.SSLWantReadError:
                    pass
        s_in.write(c_out.read())
        c_in.write(s_out.read())
        if all(done.values()):
            return s
    raise AssertionError("handshake did not finish")


def _broker_context(pki: dict[str, object], *, require_client_cert: bool) -> ssl.SSLContext:
    server = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    pki["ca_obj"].issue_cert("kafka-1").configure_cert(server)  # type: ignore[attr-defined]
    if require_client_cert:
        server.verify_mode = ssl.CERT_REQUIRED
        pki["ca_obj"].configure_trust(server)  # type: ignore[attr-defined]
    return server


def test_the_tls_context_trusts_the_ca_file_and_checks_the_host_name(pki):
    context = ssl_context(load_settings({"KAFKA_SECURITY_PROTOCOL": "SSL", "KAFKA_SSL_CAFILE": pki["ca"]}))
    _handshake(context, _broker_context(pki, require_client_cert=False), "kafka-1")
    with pytest.raises(ssl.SSLCertVerificationError):
        _handshake(context, _broker_context(pki, require_client_cert=False), "kafka-2")
    untrusting = ssl_context(load_settings({"KAFKA_SECURITY_PROTOCOL": "SSL"}))  # system CAs only
    with pytest.raises(ssl.SSLCertVerificationError):
        _handshake(untrusting, _broker_context(pki, require_client_cert=False), "kafka-1")


def test_the_tls_context_presents_the_client_certificate(pki):
    settings = load_settings({"KAFKA_SECURITY_PROTOCOL": "SSL", "KAFKA_SSL_CAFILE": pki["ca"],
                              "KAFKA_SSL_CERTFILE": pki["cert"], "KAFKA_SSL_KEYFILE": pki["key"]})
    server = _handshake(ssl_context(settings), _broker_context(pki, require_client_cert=True), "kafka-1")
    assert ("email", "monitor@example.com") in server.getpeercert()["subjectAltName"]
    without = ssl_context(load_settings({"KAFKA_SECURITY_PROTOCOL": "SSL", "KAFKA_SSL_CAFILE": pki["ca"]}))
    with pytest.raises(ssl.SSLError):
        _handshake(without, _broker_context(pki, require_client_cert=True), "kafka-1")
