"""Test fault: rank 0 of torchrun's first attempt dies (SIGKILL) half-way through writing the checkpoint of
iteration ``RESNET_TEST_KILL_AT``: the temporary file holds half its bytes, the previous checkpoint is intact.

Python imports ``sitecustomize`` at start-up when its folder is on PYTHONPATH; only the elastic-restart test
puts this folder there.
"""

import os

if os.environ.get("RESNET_TEST_KILL_AT") and os.environ.get("RANK") == "0":
    if os.environ.get("TORCHELASTIC_RESTART_COUNT", "0") == "0":
        import io
        import signal

        import torch

        _save = torch.save

        def _torn_save(obj, f, *args, **kwargs):
            if isinstance(obj, dict) and obj.get("iteration") == int(os.environ["RESNET_TEST_KILL_AT"]):
                buf = io.BytesIO()
                _save(obj, buf, *args, **kwargs)
                f.write(buf.getvalue()[: len(buf.getvalue()) // 2])
                f.flush()
                os.fsync(f.fileno())
                os.kill(os.getpid(), signal.SIGKILL)
            return _save(obj, f, *args, **kwargs)

        torch.save = _torn_save
