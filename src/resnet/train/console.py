"""What a run shows a person: a tqdm bar on a terminal, periodic log lines otherwise.

Every line also goes to ``RUN_DIR/train.log``. Only rank 0 prints.
"""

from __future__ import annotations

import sys
import time
from pathlib import Path
from typing import Any

from tqdm import tqdm


class Console:
    def __init__(
        self,
        log_path: Path | None,
        total: int,
        initial: int,
        *,
        enabled: bool = True,
        progress: bool | None = None,
        echo: bool = True,
    ) -> None:
        self.enabled, self.echo = enabled, echo
        self.log_file = log_path.open("a") if (log_path is not None and enabled) else None
        use_bar = sys.stderr.isatty() if progress is None else progress
        self.bar = (
            tqdm(total=total, initial=initial, unit="it", dynamic_ncols=True, smoothing=0.05)
            if (enabled and echo and use_bar)
            else None
        )

    def log(self, message: str) -> None:
        if not self.enabled:
            return
        if self.log_file is not None:
            self.log_file.write(f"{time.strftime('%Y-%m-%d %H:%M:%S')} {message}\n")
            self.log_file.flush()
        if self.bar is not None:
            self.bar.write(message)
        elif self.echo:
            print(message, flush=True)

    def train_line(self, rec: dict[str, Any]) -> None:
        """A training record: moves the bar (on a terminal) or prints a line (in a log)."""
        if not self.enabled:
            return
        text = (
            f"iter {rec['iteration']:>6}  train loss {rec['loss']:.4f}  error {rec['error']:6.2f}%  "
            f"lr {rec['lr']:.4g}  {rec['img_per_s']:,.0f} img/s"
        )
        if self.bar is not None:
            self.bar.update(rec["iteration"] - self.bar.n)
            self.bar.set_postfix_str(
                f"loss {rec['loss']:.3f} err {rec['error']:.1f}% lr {rec['lr']:.3g} {rec['img_per_s']:,.0f} img/s"
            )
            if self.log_file is not None:
                self.log_file.write(f"{time.strftime('%Y-%m-%d %H:%M:%S')} {text}\n")
                self.log_file.flush()
        else:
            self.log(text)

    def close(self) -> None:
        if self.bar is not None:
            self.bar.close()
            self.bar = None
        if self.log_file is not None:
            self.log_file.close()
            self.log_file = None
