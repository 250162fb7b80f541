"""What a run shows a person: a tqdm bar on a terminal, periodic log lines otherwise.

On a terminal the bar moves every iteration, with the ETA and the images per second (a ResNet-56 on a CPU
takes minutes to its first log record at 100 iterations; a bar frozen at 0 until then looks hung); the last
training record's loss, error and lr ride along. When stderr is not a terminal (a log file, CI, a pipe) no
bar is drawn at all, whatever was asked for: redraws there are only noise. Every line also goes to
``RUN_DIR/train.log``. Only rank 0 prints.

The console prints rather than logs (the one place below the CLI that does): it is the training's own
display, switched by ``fit(echo=..., progress=...)``, and its lines must interleave with the tqdm bar
(``tqdm.write``) and land in train.log whatever the program's logging says. Library code elsewhere logs
(:mod:`resnet.logs`).
"""

from __future__ import annotations

import sys
import time
from pathlib import Path
from typing import Any

from tqdm import tqdm

from resnet.io import check_output, write_output


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
        batch_size: int = 0,
    ) -> None:
        self.enabled, self.echo, self.batch_size = enabled, echo, batch_size
        self.log_file = log_path if (log_path is not None and enabled) else None
        if self.log_file is not None:
            check_output(self.log_file, owned=True)  # a link or FIFO planted as train.log: refused before training
        use_bar = progress is not False and sys.stderr.isatty()
        self.stats = ""  # the last training record, shown after the speed
        self.bar = (
            tqdm(total=total, initial=initial, unit="it", dynamic_ncols=True, smoothing=0.05, mininterval=0.5)
            if (enabled and echo and use_bar)
            else None
        )

    def tick(self, iterations: int = 1) -> None:
        """One more iteration done: the bar moves (its ETA and speed follow); nothing else happens here."""
        if self.bar is None:
            return
        self.bar.update(iterations)
        fd = self.bar.format_dict  # tqdm's smoothed rate appears after its first redraw; until then n / elapsed
        rate = fd.get("rate") or ((fd["n"] - fd.get("initial", 0)) / fd["elapsed"] if fd["elapsed"] > 0 else None)
        speed = f"{rate * self.batch_size:,.0f} img/s" if rate and self.batch_size else ""
        self.bar.set_postfix_str(" ".join(t for t in (speed, self.stats) if t), refresh=False)

    def log(self, message: str) -> None:
        if not self.enabled:
            return
        if self.log_file is not None:
            self._write(message)
        if self.bar is not None:
            self.bar.write(message)
        elif self.echo:
            print(message, flush=True)  # the console's own line (see the module's note), not a log record

    def train_line(self, rec: dict[str, Any]) -> None:
        """A training record: moves the bar (on a terminal) or prints a line (in a log)."""
        if not self.enabled:
            return
        text = (
            f"iter {rec['iteration']:>6}  train loss {rec['loss']:.4f}  error {rec['error']:6.2f}%  "
            f"lr {rec['lr']:.4g}  {rec['img_per_s']:,.0f} img/s"
        )
        if self.bar is not None:
            self.bar.update(max(0, rec["iteration"] - self.bar.n))  # in case a caller does not tick
            self.stats = f"loss {rec['loss']:.3f} err {rec['error']:.1f}% lr {rec['lr']:.3g}"
            if self.log_file is not None:
                self._write(text)
        else:
            self.log(text)

    def end_bar(self) -> None:
        """Close the bar (its final state stays on the terminal), so that what follows prints below it."""
        if self.bar is not None:
            self.bar.close()
            self.bar = None

    def close(self) -> None:
        if self.bar is not None:
            self.bar.close()
            self.bar = None
        self.log_file = None

    def _write(self, line: str) -> None:
        """One line appended to train.log (the output rule: never through a link, never into a FIFO)."""
        if self.log_file is not None:
            write_output(self.log_file, f"{time.strftime('%Y-%m-%d %H:%M:%S')} {line}\n", owned=True, append=True)
