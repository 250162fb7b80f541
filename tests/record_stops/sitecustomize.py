"""Test probe: every rank of a torchrun worker group records the iteration at which a signal stopped it.

Python imports ``sitecustomize`` at start-up when its folder is on PYTHONPATH; only the preemption test puts
this folder there (with ``RESNET_TEST_STOPS``, a folder). Each rank appends ``RANK ITERATION`` to
``stops.txt`` when it raises ``TrainingInterrupted``, so the test sees every rank's stop, not rank 0's line.
"""

import os

if os.environ.get("RESNET_TEST_STOPS") and "RANK" in os.environ:
    import resnet.errors

    _init = resnet.errors.TrainingInterrupted.__init__

    def _recording_init(self, iteration, *args, **kwargs):
        with open(os.path.join(os.environ["RESNET_TEST_STOPS"], "stops.txt"), "a") as f:
            f.write(f"{os.environ['RANK']} {iteration}\n")
        _init(self, iteration, *args, **kwargs)

    resnet.errors.TrainingInterrupted.__init__ = _recording_init
