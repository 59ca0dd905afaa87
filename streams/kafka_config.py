"""Kafka client configuration from the settings: one place that knows SASL and TLS.

Every Kafka client of the monitor is made from these two functions: the
confluent-kafka ones (replay producer, topic admin, alerts follower, start-up
check) from :func:`confluent_config`, the Faust worker (aiokafka underneath) from
:func:`faust_credentials`. With the default ``KAFKA_SECURITY_PROTOCOL=PLAINTEXT``
both give exactly what the local stack always used: the bootstrap servers and
nothing else.

>>> from streams.settings import Settings
>>> confluent_config(Settings(kafka_bootstrap_servers="kafka:9092"))
{'bootstrap.servers': 'kafka:9092'}
>>> confluent_config(Settings(kafka_security_protocol="SASL_PLAINTEXT", kafka_sasl_mechanism="SCRAM-SHA-512",
...                           kafka_sasl_username="monitor", kafka_sasl_password="s3cret"))["sasl.mechanism"]
'SCRAM-SHA-512'
>>> faust_credentials(Settings()) is None
True
"""

from __future__ import annotations

import ssl
from typing import TYPE_CHECKING

from streams.settings import Settings, SettingsError

if TYPE_CHECKING:
    from faust.types.auth import CredentialsT

SECURITY_PROTOCOLS = ("PLAINTEXT", "SSL", "SASL_PLAINTEXT", "SASL_SSL")
SASL_MECHANISMS = ("PLAIN", "SCRAM-SHA-256", "SCRAM-SHA-512")


def uses_sasl(protocol: str) -> bool:
    """SASL_PLAINTEXT and SASL_SSL authenticate with a user name and password."""
    return protocol.startswith("SASL_")


def uses_tls(protocol: str) -> bool:
    """SSL and SASL_SSL encrypt the connection (and may present a client certificate)."""
    return protocol in {"SSL", "SASL_SSL"}


def confluent_config(settings: Settings, *, bootstrap: str | None = None) -> dict[str, str]:
    """librdkafka properties for connecting: bootstrap servers plus the security settings.

    ``bootstrap`` overrides KAFKA_BOOTSTRAP_SERVERS (the topics CLI's ``--bootstrap``).
    Callers add their own client properties (group id, acks, logger) on top.
    """
    config = {"bootstrap.servers": bootstrap or settings.kafka_bootstrap_servers}
    protocol = settings.kafka_security_protocol
    if protocol == "PLAINTEXT":
        return config
    config["security.protocol"] = protocol
    if uses_sasl(protocol):
        config["sasl.mechanism"] = settings.kafka_sasl_mechanism
        config["sasl.username"] = settings.kafka_sasl_username
        config["sasl.password"] = settings.kafka_sasl_password
    if uses_tls(protocol):
        if settings.kafka_ssl_cafile:
            config["ssl.ca.location"] = settings.kafka_ssl_cafile
        if settings.kafka_ssl_certfile:
            config["ssl.certificate.location"] = settings.kafka_ssl_certfile
            config["ssl.key.location"] = settings.kafka_ssl_keyfile
    return config


def _no_passphrase() -> bytes:
    # OpenSSL would otherwise prompt on the terminal for an encrypted key and hang a container.
    return b""


def ssl_context(settings: Settings) -> ssl.SSLContext:
    """The TLS context for aiokafka: verifies the brokers (KAFKA_SSL_CAFILE, else the system CAs)
    and presents the client certificate when one is set.

    Raises SettingsError (one line naming the file's variable) when a file is not usable PEM.
    """
    cafile = settings.kafka_ssl_cafile
    try:
        context = ssl.create_default_context(ssl.Purpose.SERVER_AUTH, cafile=cafile or None)
    except (ssl.SSLError, OSError) as err:
        raise SettingsError(f"KAFKA_SSL_CAFILE={cafile!r} is not valid: expected a PEM file of CA "
                            f"certificates ({_reason(err)})") from None
    if settings.kafka_ssl_certfile:
        try:
            context.load_cert_chain(settings.kafka_ssl_certfile, settings.kafka_ssl_keyfile or None,
                                    password=_no_passphrase)
        except (ssl.SSLError, OSError) as err:
            raise SettingsError(f"KAFKA_SSL_CERTFILE={settings.kafka_ssl_certfile!r} is not valid: expected "
                                "a PEM client certificate matching the unencrypted PEM key in "
                                f"KAFKA_SSL_KEYFILE ({_reason(err)})") from None
    return context


def _reason(err: BaseException) -> str:
    text = getattr(err, "reason", None) or getattr(err, "strerror", None) or str(err)
    return str(text).splitlines()[0] if str(text) else type(err).__name__


def faust_credentials(settings: Settings) -> CredentialsT | None:
    """``broker_credentials`` for ``faust.App``: None for PLAINTEXT, else SASL or SSL credentials.

    SASL_SSL carries the TLS context inside the SASL credentials (faust then speaks SASL_SSL).
    """
    import faust

    protocol = settings.kafka_security_protocol
    if protocol == "PLAINTEXT":
        return None
    context = ssl_context(settings) if uses_tls(protocol) else None
    if uses_sasl(protocol):
        return faust.SASLCredentials(username=settings.kafka_sasl_username, password=settings.kafka_sasl_password,
                                     mechanism=settings.kafka_sasl_mechanism, ssl_context=context)
    return faust.SSLCredentials(context)
