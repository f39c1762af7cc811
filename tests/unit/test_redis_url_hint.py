"""The hint added to "cannot reach Redis" for a TLS server that wants a client certificate: the
client sees Redis's TLS alert "certificate required", or the connection closed or reset, depending
on the server and on when it dropped the connection (tests/test_redis_tls_server.py sees the
first and the last from a real Redis)."""

from __future__ import annotations

import pytest
from redis.exceptions import ConnectionError

from tasktide_services.common.redis_conn import _hint

URL = "rediss://127.0.0.1:6380/0?ssl_ca_certs=/ca.pem"


@pytest.mark.parametrize(
    "message",
    [
        "Connection closed by server.",
        "Error while reading from 127.0.0.1:6380 : (104, 'Connection reset by peer')",
        "Error while reading from 127.0.0.1:6380 : (1, '[SSL: TLSV13_ALERT_CERTIFICATE_REQUIRED] tlsv13 alert "
        "certificate required (_ssl.c:2580)')",
    ],
)
def test_a_dropped_tls_connection_without_a_client_certificate_is_hinted(message: str) -> None:
    assert "client certificate" in _hint(URL, ConnectionError(message))


@pytest.mark.parametrize(
    ("url", "message"),
    [
        (URL + "&ssl_certfile=/c.pem&ssl_keyfile=/k.pem", "Connection closed by server."),
        ("redis://127.0.0.1:6379/0", "Connection closed by server."),
        (URL, "Error 111 connecting to 127.0.0.1:6380. Connection refused."),
    ],
)
def test_no_hint_where_a_certificate_is_not_the_likely_cause(url: str, message: str) -> None:
    assert _hint(url, ConnectionError(message)) == ""
