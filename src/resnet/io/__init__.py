"""The one rule for every file a command writes, the one way every outside file is opened, and directory locks.

Outputs (:func:`write_output`, the only writer; :func:`atomic_write` is its replace step):

- **atomic**: a replacement goes to a temporary file in the same folder, is fsync'ed, then renamed over the
  old file (and the folder is fsync'ed), so a crash, a full disk or a signal at any moment leaves either the
  old file or the new one, never a torn one; a full disk keeps the previous file and says so in one line.
- **never through a link**: the rename replaces the folder entry itself, and appends open it with
  ``O_NOFOLLOW``; an existing symbolic link, FIFO, device or folder where a file is to be written is refused,
  so a link planted in a run directory or an output folder never gets its target written or truncated.
- **never over a file the project did not write**: an existing file is replaced only when it is the
  project's own, which is known in one of two ways. (1) In a run directory (claimed under its lock by
  ``resnet train``, or recognised by its records) the names ``resnet train``, ``eval`` and ``plot`` write
  there are the run's own (``owned=True``). (2) Anywhere else each write is recorded in the folder's
  ``.resnet-outputs.json`` (name, inode, size, modification time); a file whose entry still matches is
  the one written earlier and may be replaced; a file the entry does not describe (the user's own, or an
  earlier output the user has since edited or copied over) is refused with one line naming the file and
  ``--force``. Everything else needs ``--force`` (:func:`replacing`), which replaces the folder entry
  itself, never a link's target.

Inputs (:func:`open_input`): only regular files are read (checked on the open descriptor, opened
non-blocking so a FIFO cannot hang the reader), with a size bound given by the reader.
"""

from __future__ import annotations

from resnet.io.files import (
    atomic_write,
    current_umask,
    open_input,
    out_of_space,
    printable,
    read_input_text,
    refuse_overwriting,
    shown,
)
from resnet.io.lock import DirLock
from resnet.io.outputs import (
    MANIFEST,
    atomic_write_text,
    check_folder_is_ours,
    check_output,
    discard_output,
    owning,
    replacing,
    write_cache,
    write_output,
)

__all__ = [
    "MANIFEST",
    "DirLock",
    "atomic_write",
    "atomic_write_text",
    "check_folder_is_ours",
    "check_output",
    "current_umask",
    "discard_output",
    "open_input",
    "out_of_space",
    "owning",
    "printable",
    "read_input_text",
    "refuse_overwriting",
    "replacing",
    "shown",
    "write_cache",
    "write_output",
]
