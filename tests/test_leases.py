"""Leases: of several processes on one database, one purges and one syncs at a time; a holder
that stopped is taken over once its lease runs out, and the hourly purge stays hourly."""

from __future__ import annotations

import datetime as dt
import itertools
import threading

from holdshelf.bootstrap import Holdshelf
from holdshelf.service import HoldService
from holdshelf.storage.leases import LEASE_FOR, Lease, LeaseKeeper, lease_states
from holdshelf.worker import HOUSEKEEPING_EVERY, _Stopping


def two_leases(service: HoldService, clock, name: str = "purge") -> tuple[Lease, Lease]:
    return (
        Lease(service.sessions, clock, name, "host-a:101:aaaaaa"),
        Lease(service.sessions, clock, name, "host-b:202:bbbbbb"),
    )


def test_one_holder_at_a_time_until_its_lease_runs_out(service: HoldService, clock) -> None:
    a, b = two_leases(service, clock)
    assert a.keep() and a.holding()
    assert not b.keep() and not b.holding()
    clock.advance(seconds=30)
    assert a.keep()  # renewed: another 60 s from now
    clock.advance(seconds=45)
    assert not b.keep(), "a renewed lease has not run out"
    # a stops renewing (crashed): once the lease has run out, b takes it over
    clock.advance(seconds=LEASE_FOR.total_seconds())
    assert not a.holding(), "a holder that could not renew counts the lease lost"
    assert b.keep() and b.holding()
    assert not a.keep(), "the old holder, back, does not take it back"
    (state,) = lease_states(service.sessions)
    assert (state.name, state.holder) == ("purge", b.holder)
    assert state.expires_at == clock() + LEASE_FOR


def test_a_released_lease_is_taken_at_once_and_keeps_when_the_job_was_done(
    service: HoldService, clock
) -> None:
    a, b = two_leases(service, clock)
    assert a.keep()
    a.done(clock())
    a.release()
    assert not a.holding()
    assert b.keep()
    assert b.done_at == clock(), "the new holder knows the job was just done"
    assert not b.due(HOUSEKEEPING_EVERY)
    clock.advance(hours=1, seconds=1)
    assert b.keep() and b.due(HOUSEKEEPING_EVERY)


def test_of_processes_racing_for_a_lease_exactly_one_gets_it(service: HoldService, clock) -> None:
    contenders = [Lease(service.sessions, clock, "ils-sync", f"host:{n}:0") for n in range(8)]
    start = threading.Barrier(len(contenders))
    won: list[str] = []

    def take(lease: Lease) -> None:
        start.wait()
        if lease.keep():
            won.append(lease.holder)

    threads = [threading.Thread(target=take, args=(lease,)) for lease in contenders]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(30)
    assert len(won) == 1
    assert [state.holder for state in lease_states(service.sessions)] == won


def test_the_keeper_renews_and_releases_on_stop(service: HoldService, clock) -> None:
    a, b = two_leases(service, clock, "ils-sync")
    stop = threading.Event()
    thread = LeaseKeeper([a], renew_every=dt.timedelta(seconds=0.01)).start(stop)
    try:
        for _ in range(500):
            if a.holding():
                break
            stop.wait(0.01)
        assert a.holding()
        assert not b.keep()
    finally:
        stop.set()
        thread.join(10)
    assert not a.holding()
    assert b.keep(), "a stopping holder lets the next one in without waiting out the lease"


def test_a_sync_stops_once_its_process_loses_the_lease(service: HoldService, clock) -> None:
    a, b = two_leases(service, clock, "ils-sync")
    stop = threading.Event()
    assert a.keep()
    stopping = _Stopping(stop, a)
    assert not stopping.is_set()
    clock.advance(seconds=LEASE_FOR.total_seconds())  # a's renewals failed meanwhile
    assert stopping.is_set()
    assert b.keep()


class CountedWorker:
    """A worker as its own process would have it (its own lease holder), counting its purges."""

    def __init__(self, service: HoldService, clock) -> None:
        root = Holdshelf(service.settings, clock=clock, engine=service.engine)
        self.worker, self.purges = root.worker, []
        self._clock, self._purge = clock, self.worker._housekeeping
        self.worker._housekeeping = self._counted

    def _counted(self):
        self.purges.append(self._clock())
        return self._purge()

    def minute(self) -> None:
        """A minute of passes: the purge when due, the lease renewed as the keeper does."""
        self.worker.housekeep_if_due()
        if self.worker.purge_lease.holding():
            self.worker.purge_lease.keep()


def test_workers_on_one_database_purge_once_an_hour_and_take_over_from_a_stopped_one(
    service: HoldService, clock
) -> None:
    first, second, third = (CountedWorker(service, clock) for _ in range(3))
    for _ in range(180):  # three hours
        for worker in (first, second, third):
            worker.minute()
        clock.advance(minutes=1)
    assert len(first.purges) == 3 and second.purges == third.purges == []
    # The first one's process dies; another takes over, still once an hour from the last purge.
    for _ in range(120):
        for worker in (second, third):
            worker.minute()
        clock.advance(minutes=1)
    assert len(second.purges + third.purges) == 2
    assert bool(second.purges) != bool(third.purges), "one of them took over"
    purges = sorted(first.purges + second.purges + third.purges)
    gaps = [later - earlier for earlier, later in itertools.pairwise(purges)]
    assert min(gaps) >= HOUSEKEEPING_EVERY


class CountingSync:
    """An ILS sync that only counts its runs (the lease is what is tested here)."""

    def __init__(self) -> None:
        self.runs = 0

    def run(self, *, settle: bool, stop) -> None:
        self.runs += 1


def test_of_two_running_workers_one_syncs_and_a_successor_waits_for_the_next_turn(
    service: HoldService, monkeypatch
) -> None:
    from holdshelf.clock import LibraryClock
    from holdshelf.storage import leases
    from holdshelf.worker import Worker

    monkeypatch.setattr("holdshelf.worker.SYNC_FIRST_DELAY", dt.timedelta(0))
    monkeypatch.setattr(leases, "RENEW_EVERY", dt.timedelta(seconds=0.05))
    clock = LibraryClock(None)  # the sync thread waits in real time
    syncs = [CountingSync(), CountingSync()]
    workers = [
        Worker(service.settings, service.sessions, clock, housekeeping=lambda: None, sync=sync)
        for sync in syncs
    ]
    stops = [threading.Event(), threading.Event()]
    threads = [
        threading.Thread(target=worker.run_forever, args=(stop, 0.05))
        for worker, stop in zip(workers, stops, strict=True)
    ]
    for thread in threads:
        thread.start()
    try:
        for _ in range(200):
            if sum(sync.runs for sync in syncs):
                break
            threading.Event().wait(0.02)
        threading.Event().wait(0.5)  # time for a second sync, were there no lease
        assert sorted(sync.runs for sync in syncs) == [0, 1]
        first = 0 if syncs[0].runs else 1
        stops[first].set()  # stops cleanly: the lease is handed on at once ...
        workers[first].wake()
        threads[first].join(10)
        successor = workers[1 - first]
        for _ in range(200):
            if successor.sync_lease.holding():
                break
            threading.Event().wait(0.02)
        assert successor.sync_lease.holding()
        threading.Event().wait(0.3)
        assert syncs[1 - first].runs == 0, "... but the next sync is five minutes off"
    finally:
        for worker, stop, thread in zip(workers, stops, threads, strict=True):
            stop.set()
            worker.wake()
            thread.join(10)
