"""Rollout planning and the deployment state machine, as data. Pure.

Theory of operation. A deployment moves a service from release N to release M in *batches*. Each batch
names the replica slots that get an instance of M. In a surge batch (`rolling`) the new instances start
beside the old ones on new ports; once every one of them is healthy the slots switch in one step (the
gate's upstreams change at once) and the old instances drain, then stop. In a replace batch (`recreate`,
or `rolling` with `max_surge: 0`) the old instances of those slots stop first. Slots beyond the new
replica count retire in the last batch; slots beyond the old count are new.

A deployment's status: `pending → running → succeeded | failed | rolled_back`. `failed` from `pending`
is a deployment refused before it touched anything. A platform stop mid-way (SIGKILL, or a graceful stop)
leaves it `running`: at the next start a rollout that had switched a batch resumes (a rollback resumes as
a rollback); one with nothing to resume takes `interrupt` and ends `failed` with the reason in its log.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Literal

Status = Literal["pending", "running", "succeeded", "failed", "rolled_back"]
Event = Literal["start", "succeed", "fail", "roll_back", "interrupt"]
TERMINAL: frozenset[str] = frozenset({"succeeded", "failed", "rolled_back"})

TRANSITIONS: dict[tuple[str, str], Status] = {
    ("pending", "start"): "running",
    ("pending", "fail"): "failed",
    ("pending", "interrupt"): "failed",
    ("running", "succeed"): "succeeded",
    ("running", "fail"): "failed",
    ("running", "roll_back"): "rolled_back",
    ("running", "interrupt"): "failed",
}


class InvalidTransition(ValueError):
    """A deployment was asked to move in a way its state machine does not allow."""


def advance(status: str, event: str) -> Status:
    """The status after `event`; raises `InvalidTransition` (a terminal status never moves)."""
    try:
        return TRANSITIONS[(status, event)]
    except KeyError:
        raise InvalidTransition(f"a {status} deployment cannot {event}") from None


@dataclass(frozen=True)
class Batch:
    slots: tuple[int, ...]  # slots that get a new instance
    surge: bool  # True: new beside old, then switch; False: the old instances of `slots` stop first
    retire: tuple[int, ...] = ()  # slots whose old instance stops with no replacement (scale down)


def plan_batches(
    old_slots: Sequence[int], replicas: int, strategy: str, max_surge: int, max_unavailable: int
) -> list[Batch]:
    """The batches that take `old_slots` (indices running the old release) to `replicas` new instances."""
    targets = list(range(1, replicas + 1))
    extra = tuple(sorted(i for i in old_slots if i > replicas))
    if strategy == "recreate":
        return [Batch(tuple(targets), surge=False, retire=extra)] if targets or extra else []
    surge = max_surge > 0
    size = max_surge if surge else max_unavailable
    if size < 1:
        raise ValueError("max_surge and max_unavailable cannot both be 0")
    batches = [Batch(tuple(targets[i : i + size]), surge) for i in range(0, len(targets), size)]
    if extra:
        if batches:
            last = batches[-1]
            batches[-1] = Batch(last.slots, last.surge, extra)
        else:
            batches = [Batch((), surge, extra)]
    return batches


def staged_index(slot: int, current_instance_index: int | None) -> int:
    """The instance index a new instance for `slot` runs under while it is staged beside the old one:
    `slot` or `slot + 100`, whichever the old instance does not use (names such as a container's stay
    unique)."""
    return slot + 100 if current_instance_index in (None, slot) else slot


STAGED_RECORD_BASE = 200  # a staged instance's pidfile key: 200 + slot, beyond any replica count


def staged_record_key(slot: int) -> int:
    """Where a staged instance's pidfile lives until it switches in: found after a crash, it lies beyond
    the replica count and the supervisor stops it (the old release keeps serving)."""
    return STAGED_RECORD_BASE + slot


def releases_to_prune(releases: Sequence[int], current: int | None, previous: int | None, keep: int) -> list[int]:
    """Which releases to forget: all but the newest `keep`, never the serving one nor the one before it
    (a rollback's target), never one newer than the serving one (a deployment may be about to use it)."""
    newest = sorted(releases, reverse=True)[: max(keep, 0)]
    spared = {*newest, current, previous}
    return sorted(r for r in releases if r not in spared and (current is None or r < current))
