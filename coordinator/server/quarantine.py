"""Quarantine: an agent whose measurements of a label disagree with its peers' is left out
of that fleet's latency tables until an operator readmits it (`ofa-coord agent readmit`).
Several agents serving one label measure the same models (a campaign queues every item
`repeats` times), so each agent's results can be compared with the others'.

It lives with the server, which runs it (the services layer is the CLI's, and the server
does not import it); `Store.peer_ratios` computes the comparison."""

from __future__ import annotations

import math

from coordinator.state import PeerRatio, Store

__all__ = ["review", "RATIO_LIMIT", "MIN_SHARED"]

# An agent this many times slower (or faster) than its peers, over at least MIN_SHARED
# models, is quarantined. Honest devices of one class differ by a few percent.
RATIO_LIMIT = 1.5
MIN_SHARED = 5


def review(
    store: Store, label: str, limit: float = RATIO_LIMIT, min_shared: int = MIN_SHARED
) -> list[PeerRatio]:
    """Quarantine the agents of `label` that disagree with their peers; returns those
    quarantined now.

    An agent is quarantined when, over at least `min_shared` shared models, its ratio to
    its peers is outside [1/limit, limit] and so is its ratio to each peer alone, with at
    least two peers. A liar's results pull the ratio of an honest agent that shared models
    mostly with it, but that agent still agrees with its honest peers; with one peer,
    nothing says which of the two is wrong. Suspects are taken the most deviant first, and
    the rest compared again without it (a quarantined agent is no one's peer)."""
    quarantined: list[PeerRatio] = []
    while True:
        suspects = [
            peer for peer in store.peer_ratios(label) if _disagrees(peer, limit, min_shared)
        ]
        if not suspects:
            return quarantined
        worst = max(suspects, key=lambda peer: abs(math.log(peer.ratio or 1.0)))
        store.quarantine_agent(
            worst.agent_id,
            f"label {label}: its medians are {worst.ratio:.3g}x its peers' over "
            f"{worst.shared} shared models (allowed {1 / limit:.3g}-{limit:.3g})",
            worst.ratio or 1.0,
        )
        quarantined.append(worst)


def _disagrees(peer: PeerRatio, limit: float, min_shared: int) -> bool:
    def outside(ratio: float) -> bool:
        return not 1 / limit <= ratio <= limit

    return (
        not peer.quarantined
        and peer.ratio is not None
        and peer.shared >= min_shared
        and len(peer.peers) >= 2
        and outside(peer.ratio)
        and all(outside(ratio) for ratio in peer.peers.values())
    )
