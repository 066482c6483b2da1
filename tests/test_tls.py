"""TLS: the test makes its own CA and server certificate; an agent works against a TLS
coordinator, and a plaintext agent refuses a non-loopback address unless told --insecure."""

from __future__ import annotations

import subprocess
import time

import pytest

from tests.fleet import BIN, Fleet, small_models


def make_certificates(folder):
    """A throwaway CA and a server certificate for localhost/127.0.0.1, via openssl."""
    def openssl(*args):
        subprocess.run(["openssl", *args], cwd=folder, check=True, capture_output=True)
    openssl("req", "-x509", "-newkey", "rsa:2048", "-nodes", "-keyout", "ca.key", "-out",
            "ca.pem", "-days", "1", "-subj", "/CN=ofa-fleet test CA")
    openssl("req", "-newkey", "rsa:2048", "-nodes", "-keyout", "server.key", "-out",
            "server.csr", "-subj", "/CN=localhost")
    (folder / "san.ext").write_text("subjectAltName=DNS:localhost,IP:127.0.0.1\n")
    openssl("x509", "-req", "-in", "server.csr", "-CA", "ca.pem", "-CAkey", "ca.key",
            "-CAcreateserial", "-out", "server.pem", "-days", "1", "-extfile", "san.ext")
    return folder / "ca.pem", folder / "server.pem", folder / "server.key"


@pytest.fixture
def tls_fleet(tmp_path):
    ca, cert, key = make_certificates(tmp_path)
    fleet = Fleet(tmp_path)
    fleet.start_server(extra=("--tls-cert", str(cert), "--tls-key", str(key)))
    fleet.ca = ca
    yield fleet
    fleet.close()


def test_an_agent_measures_through_a_tls_coordinator(tls_fleet):
    address = f"localhost:{tls_fleet.port}"
    tls_fleet.start_agent("a", address=address, extra=("--tls-ca", str(tls_fleet.ca)))
    jobs = tls_fleet.enqueue(small_models(2))
    tls_fleet.wait_done(jobs)
    assert all(tls_fleet.store.job(j)["state"] == "done" for j in jobs)
    # a plaintext agent gets no TLS handshake: it never registers, nothing is leased to it
    (untrusted,) = tls_fleet.enqueue(small_models(1), label="other")
    tls_fleet.start_agent("plain", labels=("other",), address=address)
    time.sleep(3)
    assert not (tls_fleet.folder / "cache-plain" / "agent-id").exists()
    assert tls_fleet.store.job(untrusted)["state"] == "queued"


def test_plaintext_to_a_non_loopback_address_refuses_to_start(tmp_path):
    token = tmp_path / "t"
    token.write_text("ofa_x")
    # 192.0.2.0/24 is TEST-NET-1: documentation only, and the agent refuses before dialling
    done = subprocess.run([BIN / "ofa-agent", "run", "--coordinator", "192.0.2.1:50051",
                           "--token-file", token, "--cache-dir", tmp_path / "c"],
                          capture_output=True, text=True, timeout=30)
    assert done.returncode == 1
    assert "is not a loopback address; use --tls-ca" in done.stderr
    assert "--insecure" in done.stderr
