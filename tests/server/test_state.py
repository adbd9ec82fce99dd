"""ServerState: what running requests share (server/_state.py)."""

from __future__ import annotations

import trio

from tusd_trio.protocol import errors
from tusd_trio.server._state import MAX_BIG_BUFFERS, Interrupter, ServerState


class _Body:
    received = 0


async def test_shutdown_interrupts_tracked_bodies_and_counts_them() -> None:
    state = ServerState(request_completion_timeout=5)
    interrupter, body = Interrupter(), _Body()
    body.received = 7
    with state.track_body(interrupter, body):
        assert (state.active_uploads, state.bytes_in_flight) == (1, 7)
        state.begin_shutdown()
        assert isinstance(interrupter.reason, errors.ServerShutdownError)
    assert (state.active_uploads, state.bytes_in_flight) == (0, 0)
    await trio.lowlevel.checkpoint()


async def test_a_body_tracked_during_shutdown_is_interrupted_at_once() -> None:
    state = ServerState(request_completion_timeout=5)
    state.begin_shutdown()
    interrupter = Interrupter()
    with state.track_body(interrupter, _Body()):
        assert isinstance(interrupter.reason, errors.ServerShutdownError)
    state.accept_requests()
    assert not state.shutting_down
    await trio.lowlevel.checkpoint()


async def test_settling_is_shielded_and_bounded_only_when_asked() -> None:
    state = ServerState(request_completion_timeout=5)
    with state.settling(bounded=False) as scope:
        assert scope.shield
        assert scope.deadline == float("inf")
        state.bound_settling()  # what a shutdown does
        assert scope.deadline <= trio.current_time() + 5
    with state.settling(bounded=True) as scope:
        assert scope.deadline <= trio.current_time() + 5
    await trio.lowlevel.checkpoint()


def test_the_big_buffer_budget_is_bounded() -> None:
    state = ServerState(request_completion_timeout=5)
    assert all(state.take_big_buffer() for _ in range(MAX_BIG_BUFFERS))
    assert not state.take_big_buffer()
    state.return_big_buffer()
    assert state.take_big_buffer()
