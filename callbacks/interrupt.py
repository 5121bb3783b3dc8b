"""Ctrl+C that stops a run at the end of the current step, so what it saves can be resumed exactly."""

from __future__ import annotations

import signal
import sys
import threading
from typing import Any

import lightning as L


class StopOnInterrupt(L.Callback):
    """The first Ctrl+C (SIGINT) asks the Trainer to stop once the step running now has finished, with every
    callback's bookkeeping for it done: the results and the last checkpoint then hold whole steps, and a
    resume continues exactly as if nothing had happened. A second Ctrl+C interrupts at once (Lightning
    then saves what it has, which may end inside a step). `interrupted` tells whether it happened.
    """

    def __init__(self) -> None:
        self.interrupted = False
        self._previous_handler = None

    # installed for the training loop only (Lightning records and restores the handlers around `fit`)
    def on_train_start(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        if threading.current_thread() is threading.main_thread():  # signals reach the main thread only
            self._previous_handler = signal.signal(signal.SIGINT, self._request_stop) or signal.default_int_handler

    def _request_stop(self, signum: int, frame: Any) -> None:
        self.interrupted = True
        self._restore()  # the next Ctrl+C interrupts at once
        print("\nCtrl+C: stopping after this step (press it again to stop at once)", file=sys.stderr, flush=True)

    def on_train_batch_end(self, trainer: L.Trainer, pl_module: L.LightningModule, outputs: Any, batch: Any,
                           batch_idx: int) -> None:
        if self.interrupted:
            trainer.should_stop = True

    def on_train_end(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        self._restore()

    def on_exception(self, trainer: L.Trainer, pl_module: L.LightningModule, exception: BaseException) -> None:
        self._restore()

    def _restore(self) -> None:
        if self._previous_handler is not None:
            signal.signal(signal.SIGINT, self._previous_handler)
            self._previous_handler = None
