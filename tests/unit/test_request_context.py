"""The call's state from its peer and metadata: request id, client address, JSON or not."""

from __future__ import annotations

import uuid

from domain.config import parse_trusted_proxies
from interceptors.request_context import TrustedProxies, begin_call, client_address

ENVOY = "ipv4:127.0.0.1:41000"


class _Context:
    """What begin_call reads of a grpc.aio servicer context, and the trailers it sets."""

    def __init__(self, metadata: tuple, peer: str = ENVOY) -> None:
        self._metadata = metadata
        self._peer = peer
        self.trailers: tuple = ()

    def invocation_metadata(self) -> tuple:
        return self._metadata

    def peer(self) -> str:
        return self._peer

    def set_trailing_metadata(self, trailers: tuple) -> None:
        self.trailers = trailers


TRUSTED = TrustedProxies(parse_trusted_proxies("127.0.0.1,::1"))


def test_only_a_trusted_peer_says_who_the_client_is():
    """x-forwarded-for counts only from a trusted proxy, and only its last entry (the address Envoy saw)."""
    assert client_address(ENVOY, "203.0.113.9, 198.51.100.7", TRUSTED) == "198.51.100.7"
    assert client_address("ipv6:[::1]:5000", "2001:db8::0:1", TRUSTED) == "2001:db8::1"  # written as ipaddress does
    assert client_address("ipv4:192.0.2.10:5000", "198.51.100.7", TRUSTED) == "192.0.2.10"
    assert client_address(ENVOY, "not an address", TRUSTED) == "127.0.0.1"
    assert client_address(ENVOY, None, TRUSTED) == "127.0.0.1"
    # Asked again (the answers are remembered), the same.
    assert client_address("ipv4:192.0.2.10:5001", "198.51.100.7", TRUSTED) == "192.0.2.10"
    assert client_address(ENVOY, "198.51.100.8", TRUSTED) == "198.51.100.8"


def test_a_server_remembers_a_bounded_number_of_peers():
    trusted = TrustedProxies(parse_trusted_proxies("127.0.0.1"))
    for index in range(TrustedProxies.MAX_REMEMBERED + 50):
        assert not trusted.trust(f"10.0.{index // 250}.{index % 250}")
    assert len(trusted._known) == TrustedProxies.MAX_REMEMBERED
    assert trusted.trust("127.0.0.1")  # not remembered, still answered


def test_the_call_state_comes_from_one_pass_over_the_metadata():
    metadata = (
        ("x-request-id", "bad id with spaces"),
        ("x-request-id", "req-0123456789"),
        ("x-forwarded-for", "198.51.100.7"),
        ("x-forwarded-for", "203.0.113.1"),
        ("x-envoy-original-path", "/v1/transfers"),
        ("authorization", "Bearer t"),
    )
    context = _Context(metadata)
    state = begin_call("/emoney.payments.v1.PaymentsService/CreateTransfer", context, TRUSTED)
    assert state.request_id == "req-0123456789"  # the first well-formed one
    assert state.client_address == "198.51.100.7"  # from the first x-forwarded-for
    assert state.transcoded_from_json
    assert state.metadata == metadata and state.peer == ENVOY
    assert context.trailers == (("x-request-id", "req-0123456789"),)


def test_a_call_without_a_usable_request_id_gets_a_new_one():
    state = begin_call("/m", _Context((("x-request-id", "short"),)), TRUSTED)
    assert uuid.UUID(state.request_id) and not state.transcoded_from_json and state.client_address == "127.0.0.1"


def test_the_transcoder_header_marks_json_calls():
    """Envoy's transcoder adds x-envoy-original-path; native and grpc-web calls have no such header."""
    assert begin_call("/m", _Context((("x-envoy-original-path", "/v1/sessions:logout"), ("x-request-id", "r"))),
                      TRUSTED).transcoded_from_json
    assert not begin_call("/m", _Context((("content-type", "application/grpc"), ("x-grpc-web", "1"))),
                          TRUSTED).transcoded_from_json
