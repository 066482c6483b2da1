"""The state's contract: tokens (secret shown once, unique names, revocation, binding to
one agent) and agents (registration, ownership, forgetting, online judged by heartbeat age)."""

from __future__ import annotations

import pytest

from coordinator.state import Forbidden, NotFound
from tests.state.helpers import add_agent, age_heartbeats, agent_row, enqueue, lease, lease_row


def test_token_secret_is_returned_once(store):
    secret = store.create_token("edge-1")
    assert secret.startswith("ofa_") and len(secret) > 30
    token = store.token_by_secret(secret)
    assert (token.name, token.agent_id, token.revoked) == ("edge-1", None, False)
    assert store.token_by_secret(secret + "x") is None
    assert store.create_token("edge-2") != secret


def test_token_names_are_unique_and_non_empty(store):
    store.create_token("dup")
    with pytest.raises(ValueError, match=r"^name: .*'dup'"):
        store.create_token("dup")
    with pytest.raises(ValueError, match=r"^name:"):
        store.create_token("  ")
    assert [t["name"] for t in store.list_tokens()] == ["dup"]


def test_revoke_token(store):
    secret = store.create_token("old")
    store.revoke_token("old")
    assert store.token_by_secret(secret).revoked
    assert store.list_tokens()[0]["revoked_at"] is not None
    with pytest.raises(NotFound, match="old"):
        store.revoke_token("old")  # already revoked
    with pytest.raises(NotFound, match="nope"):
        store.revoke_token("nope")


def test_token_binds_to_its_first_agent(store):
    token = add_agent(store, "a1")
    assert token.agent_id == "a1"
    assert store.list_tokens()[0]["agent_id"] == "a1"
    with pytest.raises(Forbidden, match="a1"):
        store.register_agent(token, "a2", ["cpu"], {}, 1, "v")
    # an empty id means "the one bound to my token"
    assert store.register_agent(token, "", ["cpu"], {}, 1, "v") == "a1"
    assert [a["id"] for a in store.list_agents()] == ["a1"]


def test_register_without_id_gets_a_generated_one(store):
    secret = store.create_token("fresh")
    agent_id = store.register_agent(store.token_by_secret(secret), "", ["x"], {}, 1, "v")
    assert agent_id and store.token_by_secret(secret).agent_id == agent_id


def test_another_token_cannot_take_over_an_agent_id(store):
    add_agent(store, "a1")
    intruder = store.token_by_secret(store.create_token("intruder"))
    with pytest.raises(Forbidden):
        store.register_agent(intruder, "a1", ["cpu"], {}, 1, "v")
    assert store.list_tokens()[1]["agent_id"] is None  # the intruder's token stays unbound


def test_check_agent(store):
    t1 = add_agent(store, "a1")
    t2 = add_agent(store, "a2")
    store.check_agent("a1", t1)
    with pytest.raises(Forbidden):
        store.check_agent("a1", t2)
    with pytest.raises(NotFound):
        store.check_agent("ghost", t1)


def test_forget_agent_then_register_again(store, digest):
    token = add_agent(store, "a1", labels=("cpu", "x86"))
    job_id = enqueue(store, digest)[0]
    held = lease(store)[0]
    store.forget_agent("a1")
    with pytest.raises(NotFound):
        store.check_agent("a1", token)
    assert store.list_agents() == []
    assert store.agent_labels("a1") == []
    assert lease_row(store, held.lease_id)["state"] == "expired"
    assert store.job(job_id)["state"] == "queued"  # its lease was given up
    assert "forgotten" in store.job(job_id)["error"]

    assert store.register_agent(token, "a1", ["cpu", "x86"], {}, 1, "v") == "a1"
    store.check_agent("a1", token)
    assert sorted(store.agent_labels("a1")) == ["cpu", "x86"]
    assert lease(store)[0].job_id == job_id
    with pytest.raises(NotFound):
        store.forget_agent("ghost")


def test_listing_judges_online_from_the_heartbeat_age(store):
    """An agent whose last heartbeat is older than its offline window is listed offline,
    although no sweeper has run to clear its flag."""
    token = add_agent(store, "a1")
    store.register_agent(token, "a1", ["cpu"], {}, 1, "v", offline_after_s=30)
    assert store.list_agents()[0]["online"] == 1
    age_heartbeats(store, 31)
    assert agent_row(store, "a1")["online"] == 1  # the stale flag
    assert store.list_agents()[0]["online"] == 0


def test_a_token_serves_only_the_labels_it_allows(store):
    token = store.token_by_secret(store.create_token("pixel", labels=["pixel7", "arm", "arm"]))
    assert token.labels == ("arm", "pixel7")
    assert store.list_tokens()[0]["labels"] == ["arm", "pixel7"]
    with pytest.raises(Forbidden) as refused:
        store.register_agent(token, "a1", ["pixel7", "other", "x86"], {}, 1, "v")
    assert str(refused.value) == (
        "labels: token 'pixel' may not serve other, x86 (it allows arm, pixel7)"
    )
    assert store.list_agents() == []
    assert store.list_tokens()[0]["agent_id"] is None  # a refused agent binds nothing


def test_an_unrestricted_token_serves_any_label(store):
    token = store.token_by_secret(store.create_token("any"))
    assert token.labels is None and store.list_tokens()[0]["labels"] is None
    assert store.register_agent(token, "a1", ["pixel7", "other"], {}, 1, "v") == "a1"
    assert sorted(store.agent_labels("a1")) == ["other", "pixel7"]


def test_a_restricted_token_registers_a_subset_of_its_labels(store):
    token = store.token_by_secret(store.create_token("pixel", labels=["pixel7", "arm"]))
    assert store.register_agent(token, "a1", ["pixel7"], {}, 1, "v") == "a1"
    assert store.agent_labels("a1") == ["pixel7"]


@pytest.mark.parametrize(
    "labels, error",
    [
        ([], r"^labels: expected at least one label"),
        (["pixel 7"], r"^label: expected 1-64 characters .*'pixel 7'"),
        (["x" * 65], r"^label: expected 1-64"),
    ],
)
def test_token_labels_are_checked(store, labels, error):
    with pytest.raises(ValueError, match=error):
        store.create_token("t", labels=labels)
    assert store.list_tokens() == []
