"""TLS: the test makes its own CAs and server certificates; an agent works against a TLS
coordinator, and every TLS mistake (wrong CA, a certificate for another name, TLS on one
side only, plaintext off loopback) stops the agent at once with exit code 3 and one line
that says what to change."""

from __future__ import annotations

import subprocess

import pytest

from agent.settings import MISCONFIGURED
from tests.fleet import BIN, Fleet, small_models, wait_for


def make_certificates(folder, names: str = "DNS:localhost,IP:127.0.0.1", days: int = 1):
    """A throwaway CA and a server certificate for `names` (a subjectAltName) valid for
    `days` (-1: expired yesterday), via openssl."""
    folder.mkdir(parents=True, exist_ok=True)

    def openssl(*args):
        subprocess.run(["openssl", *args], cwd=folder, check=True, capture_output=True)

    openssl(
        "req",
        "-x509",
        "-newkey",
        "rsa:2048",
        "-nodes",
        "-keyout",
        "ca.key",
        "-out",
        "ca.pem",
        "-days",
        "1",
        "-subj",
        "/CN=ofa-fleet test CA",
    )
    openssl(
        "req",
        "-newkey",
        "rsa:2048",
        "-nodes",
        "-keyout",
        "server.key",
        "-out",
        "server.csr",
        "-subj",
        "/CN=ofa-fleet test server",
    )
    (folder / "san.ext").write_text(f"subjectAltName={names}\n")
    openssl(
        "x509",
        "-req",
        "-in",
        "server.csr",
        "-CA",
        "ca.pem",
        "-CAkey",
        "ca.key",
        "-CAcreateserial",
        "-out",
        "server.pem",
        "-days",
        str(days),
        "-extfile",
        "san.ext",
    )
    return folder / "ca.pem", folder / "server.pem", folder / "server.key"


def tls_server(folder, names: str = "DNS:localhost,IP:127.0.0.1", days: int = 1) -> Fleet:
    ca, cert, key = make_certificates(folder / "certs", names, days)
    fleet = Fleet(folder)
    fleet.start_server(extra=("--tls-cert", str(cert), "--tls-key", str(key)))
    fleet.ca = ca
    return fleet


@pytest.fixture
def tls_fleet(tmp_path):
    fleet = tls_server(tmp_path)
    yield fleet
    fleet.close()


def stops_with_the_fix(fleet: Fleet, name: str, fix: str, **agent) -> str:
    """Start agent `name`; it must exit 3 by itself, never having registered, and its one
    error line must contain `fix`. Returns that line."""
    process = fleet.start_agent(name, **agent)
    assert process.wait(timeout=60) == MISCONFIGURED
    log = fleet.agent_log(name)
    errors = [line for line in log.splitlines() if " ERROR " in line]
    assert len(errors) == 1 and fix in errors[0], log
    assert "Traceback" not in log
    assert not (fleet.folder / f"cache-{name}" / "agent-id").exists()
    return errors[0]


def test_an_agent_measures_through_a_tls_coordinator(tls_fleet):
    address = f"localhost:{tls_fleet.port}"
    tls_fleet.start_agent("a", address=address, extra=("--tls-ca", str(tls_fleet.ca)))
    jobs = tls_fleet.enqueue(small_models(2))
    tls_fleet.wait_done(jobs)
    assert all(tls_fleet.store.job(j)["state"] == "done" for j in jobs)


def test_a_plaintext_agent_against_a_tls_coordinator_says_to_pass_the_ca(tls_fleet):
    (untrusted,) = tls_fleet.enqueue(small_models(1), label="other")
    stops_with_the_fix(
        tls_fleet,
        "plain",
        "speaks TLS and this agent does not: pass the coordinator's CA certificate with --tls-ca",
        labels=("other",),
        address=f"localhost:{tls_fleet.port}",
    )
    assert tls_fleet.store.job(untrusted)["state"] == "queued"


def test_a_tls_agent_against_a_plaintext_coordinator_says_what_to_change(tmp_path):
    ca, _, _ = make_certificates(tmp_path / "certs")
    fleet = Fleet(tmp_path)
    try:
        fleet.start_server()
        stops_with_the_fix(
            fleet,
            "tls",
            "does not speak TLS: start the coordinator with "
            "--tls-cert and --tls-key, or drop --tls-ca",
            address=f"localhost:{fleet.port}",
            extra=("--tls-ca", str(ca)),
        )
    finally:
        fleet.close()


def test_a_ca_that_did_not_sign_the_certificate_is_named(tls_fleet, tmp_path):
    other_ca, _, _ = make_certificates(tmp_path / "other")
    line = stops_with_the_fix(
        tls_fleet,
        "wrong-ca",
        "does not verify against --tls-ca",
        address=f"localhost:{tls_fleet.port}",
        extra=("--tls-ca", str(other_ca)),
    )
    assert "pass the CA certificate that signed it" in line


def test_a_certificate_for_another_name_is_named(tmp_path):
    fleet = tls_server(tmp_path, names="DNS:coordinator.elsewhere.test")
    try:  # the CA is right; the certificate names another host than the one dialled
        line = stops_with_the_fix(
            fleet,
            "mismatch",
            "is not issued for 'localhost'",
            address=f"localhost:{fleet.port}",
            extra=("--tls-ca", str(fleet.ca)),
        )
        assert "connect by a name its subjectAltName lists" in line
    finally:
        fleet.close()


def test_an_expired_certificate_is_retried_as_the_clock_may_be_wrong(tmp_path):
    fleet = tls_server(tmp_path, days=-1)
    try:
        process = fleet.start_agent(
            "a", address=f"localhost:{fleet.port}", extra=("--tls-ca", str(fleet.ca))
        )
        wait_for(
            lambda: (
                "CERTIFICATE_VERIFY_FAILED: certificate has expired" in fleet.agent_log("a")
                and fleet.agent_log("a").count("Register: UNAVAILABLE; retrying") >= 4
            ),
            90,
            "the agent to log the expired certificate and retry four times",
        )
        assert process.poll() is None  # still trying, not stopped
        # localhost is ::1 (refused: the coordinator listens on 127.0.0.1) and 127.0.0.1
        # (expired), tried in turn: each cause is logged once, not at every retry
        outages = [
            line.split(" WARNING ")[1]
            for line in fleet.agent_log("a").splitlines()
            if " WARNING no answer from" in line
        ]
        assert len(outages) == len(set(outages)), outages
    finally:
        fleet.close()


def test_plaintext_to_a_non_loopback_address_refuses_to_start(tmp_path):
    token = tmp_path / "t"
    token.write_text("ofa_x")
    # 192.0.2.0/24 is TEST-NET-1: documentation only, and the agent refuses before dialling
    done = subprocess.run(
        [
            BIN / "ofa-agent",
            "run",
            "--coordinator",
            "192.0.2.1:50051",
            "--token-file",
            token,
            "--cache-dir",
            tmp_path / "c",
        ],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert done.returncode == MISCONFIGURED
    assert done.stderr.count("\n") == 1 and "is not a loopback address; use --tls-ca" in done.stderr
    assert "--insecure" in done.stderr
