"""The long runs' interruption: whenever SIGINT or SIGTERM arrives, the run ends with 130 after its
clean-up, never cut short and never lost (tools/interruption.py)."""

from __future__ import annotations

import os
import signal

import pytest

from tools.interruption import Interruption


@pytest.fixture
def interruption():
    saved = {number: signal.getsignal(number) for number in (signal.SIGINT, signal.SIGTERM)}
    yield Interruption().install()
    for number, handler in saved.items():
        signal.signal(number, handler)


@pytest.mark.parametrize("number", [signal.SIGINT, signal.SIGTERM])
def test_a_signal_during_the_work_raises_there(interruption, number):
    with pytest.raises(KeyboardInterrupt):
        with interruption.interruptible():
            os.kill(os.getpid(), number)
            signal.sigtimedwait([], 0)  # give the handler its turn
    assert interruption.happened


def test_a_signal_after_the_work_is_recorded_not_raised(interruption):
    """What once lost an interrupt: it came just after the last scenario, during the clean-up."""
    with interruption.interruptible():
        pass
    cleaned_up = False
    os.kill(os.getpid(), signal.SIGINT)
    signal.sigtimedwait([], 0)
    cleaned_up = True
    assert cleaned_up and interruption.happened


def test_a_second_signal_never_cuts_the_clean_up_short(interruption):
    steps = []
    with pytest.raises(KeyboardInterrupt):
        with interruption.interruptible():
            try:
                os.kill(os.getpid(), signal.SIGINT)
                signal.sigtimedwait([], 0)
            finally:
                os.kill(os.getpid(), signal.SIGINT)  # Ctrl-C again while stopping processes
                signal.sigtimedwait([], 0)
                steps.append("stopped")
    assert steps == ["stopped"] and interruption.happened


def test_a_signal_before_the_work_stops_it_from_starting(interruption):
    os.kill(os.getpid(), signal.SIGTERM)
    signal.sigtimedwait([], 0)
    started = False
    with pytest.raises(KeyboardInterrupt):
        with interruption.interruptible():
            started = True
    assert not started
