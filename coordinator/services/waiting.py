"""Following a campaign until it finishes: the one loop behind `campaign wait`, the demo and
`specialize --verify`. It only observes (callers render and decide); the campaign becomes
done or cancelled in the state, where its last job finishes."""

from __future__ import annotations

import time
from collections.abc import Iterator
from dataclasses import dataclass

from coordinator.services.campaigns import campaign_status, unserved_targets
from coordinator.state import Store

__all__ = ["Progress", "CampaignTimeout", "follow_campaign", "FINAL_STATES"]

FINAL_STATES = ("done", "cancelled")


@dataclass(frozen=True)
class Progress:
    """One look at a campaign: its status (see `campaign_status`), the targets with jobs
    left that no online agent serves (one line each), and whether it has finished."""

    status: dict
    unserved: list[str]

    @property
    def finished(self) -> bool:
        return self.status["state"] in FINAL_STATES

    @property
    def all_done(self) -> bool:
        """Finished with every job done (none failed or cancelled)."""
        done = sum(counts.get("done", 0) for counts in self.status["targets"].values())
        return self.finished and done == self.status["total"]


class CampaignTimeout(TimeoutError):
    """The campaign did not finish in time; it keeps running. `progress` is the last look."""

    def __init__(self, progress: Progress, timeout_s: float) -> None:
        super().__init__(f"campaign {progress.status['id']}: not finished after {timeout_s:g} s")
        self.progress = progress


def follow_campaign(
    store: Store, campaign_id: str, interval_s: float = 1.0, timeout_s: float = 0.0
) -> Iterator[Progress]:
    """Yield the campaign's progress now and every `interval_s` until it has finished (the
    last item yielded is the finished one). With `timeout_s` > 0, raise CampaignTimeout once
    that long has passed without it finishing."""
    started = time.monotonic()
    while True:
        status = campaign_status(store, campaign_id)
        progress = Progress(
            status, [] if status["state"] in FINAL_STATES else unserved_targets(store, status)
        )
        yield progress
        if progress.finished:
            return
        if timeout_s and time.monotonic() - started > timeout_s:
            raise CampaignTimeout(progress, timeout_s)
        time.sleep(interval_s)
