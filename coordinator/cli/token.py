"""`ofa-coord token create|revoke|list`: the agents' tokens."""

from __future__ import annotations

import click

from agent.output import Column, emit, format_option
from coordinator.cli.options import DB, NEW_DB
from coordinator.output_files import Staged
from coordinator.state import Store


@click.group()
def token() -> None:
    """Create, list and revoke agent tokens."""


@token.command("create")
@NEW_DB
@click.option("--name", required=True, help="A name for the agent this token is for.")
@click.option(
    "--agent",
    "agent_id",
    help="Bind it to this registered agent (token rotation: "
    "the agent keeps its id; revoke the old token).",
)
@click.option(
    "--label",
    "labels",
    multiple=True,
    help="A device label its agent may serve (repeatable); it may register no other.",
)
@click.option(
    "--any-label",
    is_flag=True,
    help="Let its agent serve any label (asked for explicitly: such a token can feed "
    "every device class's tables).",
)
@click.option(
    "--out",
    type=click.Path(dir_okay=False),
    help="Write the token to this file (mode 600) instead of printing it.",
)
def token_create(
    db: str,
    name: str,
    agent_id: str | None,
    labels: tuple[str, ...],
    any_label: bool,
    out: str | None,
) -> None:
    """Mint a token. It is shown once; the coordinator keeps only its hash."""
    if bool(labels) == any_label:
        raise click.UsageError(
            "--label/--any-label: give either --label L (repeatable), the labels the token "
            "may serve, or --any-label for a token that may serve any label"
        )
    allowed = list(labels) if labels else None
    store = Store(db)
    if not out:
        click.echo(store.create_token(name, agent_id, allowed))
        return
    # The secret reaches the disk (mode 600, synced) before the token is committed, and the
    # file takes its name only after: an unwritable or full --out creates no token.
    with Staged(out, private=True) as staged, store.transaction():
        staged.write(store.create_token(name, agent_id, allowed) + "\n")
    click.echo(f"token {name!r} written to {out}")


@token.command("revoke")
@DB
@click.option("--name", required=True, help="The token to revoke.")
def token_revoke(db: str, name: str) -> None:
    """Refuse this token from now on."""
    Store(db).revoke_token(name)
    click.echo(f"token {name!r} revoked")


@token.command("list")
@DB
@format_option(csv=True)
def token_list(db: str, fmt: str) -> None:
    """Names, states, labels and bound agents of all tokens (never the secrets). A token
    that may serve any label lists its labels as "any"."""
    tokens = [
        {
            **row,
            "state": "revoked" if row["revoked_at"] else "active",
            "labels": "any" if row["labels"] is None else row["labels"],
        }
        for row in Store(db).list_tokens()
    ]
    columns = [
        Column("name", "name"),
        Column("state", "state"),
        Column("labels", "labels", lambda labels: labels if labels == "any" else ",".join(labels)),
        Column("agent", "agent_id"),
    ]
    emit(tokens, fmt, columns, empty="no tokens")
