"""Stop signals: the first SIGTERM/SIGUSR1 is recorded, a second one changes nothing, handlers are restored."""

import os
import signal

from ml_benchmark_spategan.training.signals import REQUEUE_EXIT_CODE, Preempted, StopFlag


def test_first_signal_is_kept_and_a_second_changes_nothing():
    previous = signal.getsignal(signal.SIGUSR1)
    flag = StopFlag().install()
    try:
        assert not flag
        os.kill(os.getpid(), signal.SIGUSR1)
        assert flag and flag.name == "SIGUSR1"
        os.kill(os.getpid(), signal.SIGTERM)  # e.g. while the checkpoint is being written
        assert flag.name == "SIGUSR1"
    finally:
        flag.uninstall()
    assert signal.getsignal(signal.SIGUSR1) is previous
    assert Preempted("x").exit_code == REQUEUE_EXIT_CODE == 75
