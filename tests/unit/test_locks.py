"""In-flight locks: a concurrent duplicate answers ABORTED, the key frees afterwards."""

from __future__ import annotations

import threading

import pytest

from csi_disk.errors import Aborted
from csi_disk.locks import InFlight, InstanceSlots
from tests.waiting import wait_until


def test_second_holder_is_aborted_and_names_the_key() -> None:
    locks = InFlight()
    with (
        locks.hold("d-abc"),
        pytest.raises(Aborted, match="d-abc already in progress"),
        locks.hold("d-abc"),
    ):
        pass


def test_key_is_released_after_the_block_even_on_error() -> None:
    locks = InFlight()
    with pytest.raises(RuntimeError), locks.hold("k"):
        raise RuntimeError("boom")
    assert not locks.is_held("k")
    with locks.hold("k"):
        assert locks.is_held("k")


def test_different_keys_do_not_block_each_other() -> None:
    locks = InFlight()
    with locks.hold("a"), locks.hold("b"):
        assert locks.is_held("a") and locks.is_held("b")


def test_exactly_one_of_many_threads_wins() -> None:
    locks = InFlight()
    start = threading.Barrier(16)
    release = threading.Event()
    outcomes: list[str] = []
    guard = threading.Lock()

    def worker() -> None:
        start.wait()
        try:
            with locks.hold("vol"):
                with guard:
                    outcomes.append("won")
                release.wait(5)
        except Aborted:
            with guard:
                outcomes.append("aborted")

    threads = [threading.Thread(target=worker) for _ in range(16)]
    for t in threads:
        t.start()

    def losers_reported() -> bool:
        with guard:
            return len(outcomes) >= 16 or outcomes.count("aborted") == 15

    wait_until(losers_reported, "every loser reported")  # then let the winner go
    release.set()
    for t in threads:
        t.join()
    assert outcomes.count("won") == 1
    assert outcomes.count("aborted") == 15
    assert not locks.is_held("vol")


def test_instance_slots_allow_one_attach_and_one_detach_per_instance() -> None:
    slots = InstanceSlots()
    with slots.attach("i-1", 1), slots.detach("i-1", 1), slots.attach("i-2", 1):
        with pytest.raises(Aborted, match="attach to instance i-1"), slots.attach("i-1", 0.01):
            pass
        with pytest.raises(Aborted, match="detach from instance i-1"), slots.detach("i-1", 0.01):
            pass
    with slots.attach("i-1", 0.01):
        pass


def test_waiting_detach_goes_before_a_new_attach() -> None:
    slots = InstanceSlots()
    order: list[str] = []
    detach_queued = threading.Event()
    with slots.attach("i-1", 1), slots.detach("i-1", 1):

        def detacher() -> None:
            detach_queued.set()
            with slots.detach("i-1", 5):
                order.append("detach")

        t = threading.Thread(target=detacher)
        t.start()
        detach_queued.wait(5)
        wait_until(lambda: slots._detach_waiting.get("i-1"), "the second detach queued")
        # The attach slot is busy and a detach waits: a new attach must not jump ahead.
        with pytest.raises(Aborted), slots.attach("i-1", 0.01):
            pass
    t.join()
    with slots.attach("i-1", 1):
        order.append("attach")
    assert order == ["detach", "attach"]


def test_a_queued_detach_goes_before_an_attach_whose_slot_is_free() -> None:
    """Detach priority on its own: the attach slot is free, only the waiting detach holds
    the attach back (it frees a disk slot the attach may need)."""
    slots = InstanceSlots()
    order: list[str] = []
    attached = threading.Event()

    def detacher() -> None:
        with slots.detach("i-1", 5):
            order.append("detach")

    def attacher() -> None:
        with slots.attach("i-1", 5):
            order.append("attach")
            attached.set()

    with slots.detach("i-1", 1):  # a detach in flight; no attach anywhere
        queued = threading.Thread(target=detacher)
        queued.start()
        wait_until(lambda: slots._detach_waiting.get("i-1"), "the second detach queued")
        late = threading.Thread(target=attacher)
        late.start()
        assert not attached.wait(0.2), "the attach went ahead of a queued detach"
    queued.join(5)
    late.join(5)
    assert order == ["detach", "attach"]
