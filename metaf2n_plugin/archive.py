"""What lets ``metaf2n-infer`` work through an archive of photos: one run at a time per output folder (a lock), a
record per photo (``report.jsonl``) that survives a crash, and the photos shared out over torchrun's processes.

- The lock is ``<out>/.metaf2n-infer.lock``, held with ``flock`` for the run's life and removed at its end: the
  kernel drops the lock when the process ends, however it ends (a SIGKILL included), so a file left by a killed run
  never blocks a re-run. ``flock`` is reliable on local file systems; on NFS, one run per folder is the user's
  care.
- ``report.jsonl`` holds one JSON object per photo, its latest outcome. While a run works, each process appends a
  line per photo to its own ``.report.rank<k>.jsonl`` (flushed and fsynced, so a killed run loses at most the line
  being written); at the end rank 0 gathers every process's lines, merges them into ``report.jsonl`` (written
  atomically) and removes the parts. A run that finds parts of a killed run merges them first.
- Ranks: ``torchrun`` sets ``RANK``, ``WORLD_SIZE`` and ``LOCAL_RANK``; rank 0 decides which photos are still to
  do and broadcasts the list, so that every rank shares out the same list; rank ``k`` takes photos ``k``,
  ``k + N``, ... of it (gloo on the CPU, NCCL on CUDA).
"""
import contextlib
import dataclasses
import fcntl
import json
import os
from collections.abc import Iterator, Sequence
from typing import Any, Optional

import torch
import torch.distributed as dist

from metaf2n_plugin.atomic_write import leftovers, write_atomically
from metaf2n_plugin.compat import init_process_group

REPORT = 'report.jsonl'
LOCK = '.metaf2n-infer.lock'


class FolderBusyError(OSError):
    """The output folder is another run's now. ``folder``: it; ``holder``: what that run wrote in the lock."""

    def __init__(self, folder: str, holder: str) -> None:
        self.folder, self.holder = folder, holder
        super().__init__(f'output folder {folder!r} is being written by another metaf2n-infer run ({holder}); '
                         'wait for it to end, or choose another folder with -o')


@contextlib.contextmanager
def folder_lock(folder: str) -> Iterator[None]:
    """Hold ``folder``'s lock inside; :class:`FolderBusyError` at once when another process holds it."""
    path = os.path.join(folder, LOCK)
    fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o666)
    try:
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            holder = os.pread(fd, 200, 0).decode('utf-8', 'replace').strip() or 'a process'
            raise FolderBusyError(folder, holder) from None
        os.ftruncate(fd, 0)
        os.pwrite(fd, f'pid {os.getpid()} on {os.uname().nodename}'.encode(), 0)
        try:
            yield
        finally:
            os.unlink(path)  # still held: a run starting now finds it busy, or a new file once this one is gone
    finally:
        os.close(fd)


@dataclasses.dataclass
class Ranks:
    """This process's place among torchrun's: ``rank`` of ``world`` (1: no torchrun) and its ``device``."""
    rank: int = 0
    world: int = 1
    device: Optional[str] = None

    @classmethod
    def from_environment(cls, device: Optional[str]) -> 'Ranks':
        """The ranks torchrun's environment gives, the process group joined when there are several (NCCL when the
        device is CUDA, else gloo); ``device`` None becomes ``cuda:<LOCAL_RANK>`` when CUDA is there."""
        world = int(os.environ.get('WORLD_SIZE', '1'))
        if world == 1:
            return cls(device=device)
        cuda = device is None and torch.cuda.is_available() or str(device).startswith('cuda')
        if cuda:
            if device in (None, 'cuda'):
                device = f'cuda:{int(os.environ.get("LOCAL_RANK", "0"))}'
            torch.cuda.set_device(torch.device(str(device)))  # NCCL's collectives run on the current device
        if not dist.is_initialized():
            init_process_group('nccl' if cuda else 'gloo')
        return cls(dist.get_rank(), dist.get_world_size(), device)

    def share(self, items: list[Any]) -> list[Any]:
        """This rank's items of ``items`` (the same list on every rank): every ``world``-th from ``rank``."""
        return items[self.rank::self.world]

    def from_rank0(self, value: Any) -> Any:
        """Rank 0's ``value`` on every rank."""
        if self.world == 1:
            return value
        box = [value]
        dist.broadcast_object_list(box, src=0)
        return box[0]

    def gathered(self, values: list[Any]) -> list[Any]:
        """On rank 0, every rank's ``values`` concatenated in rank order; [] on the others."""
        if self.world == 1:
            return values
        boxes: Optional[list[Any]] = [None] * self.world if self.rank == 0 else None
        dist.gather_object(values, boxes, dst=0)
        return [value for box in boxes or [] for value in box]

    def close(self) -> None:
        if self.world > 1 and dist.is_initialized():
            dist.destroy_process_group()


def part_path(folder: str, rank: int) -> str:
    return os.path.join(folder, f'.report.rank{rank}.jsonl')


def read_lines(path: str) -> list[dict[str, Any]]:
    """The records of a JSON-lines file, a line that does not parse (the one a killed run was writing) left out."""
    records = []
    with contextlib.suppress(FileNotFoundError), open(path, encoding='utf-8') as f:
        for line in f:
            with contextlib.suppress(json.JSONDecodeError):
                record = json.loads(line)
                if isinstance(record, dict) and 'photo' in record:
                    records.append(record)
    return records


def parts_in(folder: str) -> list[str]:
    """The report parts in ``folder`` (this run's, or those a killed run left), by name."""
    return sorted(name for name in os.listdir(folder) if name.startswith('.report.rank') and name.endswith('.jsonl'))


def write_report(folder: str, records: Sequence[dict[str, Any]] = ()) -> dict[str, dict[str, Any]]:
    """``photo -> record`` of ``report.jsonl``, then of the parts (this run's, or a killed run's), then ``records``,
    a later record of a photo replacing an earlier one. With parts or ``records``, written into ``report.jsonl``
    (atomically), the parts then removed; the temporary files of writes a killed run left go too. Call it holding
    the folder's lock."""
    parts = parts_in(folder)
    report: dict[str, dict[str, Any]] = {}
    for name in [REPORT] + parts:
        for record in read_lines(os.path.join(folder, name)):
            report[record['photo']] = record
    for record in records:
        report[record['photo']] = record
    if parts or records:
        write_atomically(os.path.join(folder, REPORT), ''.join(json.dumps(r) + '\n' for r in report.values()))
    for name in parts:
        os.unlink(os.path.join(folder, name))
    for path in leftovers(folder):
        os.unlink(path)
    return report


class ReportPart:
    """This rank's lines of the run, appended one per photo and fsynced (``.report.rank<k>.jsonl``)."""

    def __init__(self, folder: str, rank: int) -> None:
        self.file = open(part_path(folder, rank), 'a', encoding='utf-8')
        self.records: list[dict[str, Any]] = []

    def add(self, record: dict[str, Any]) -> None:
        self.records.append(record)
        self.file.write(json.dumps(record) + '\n')
        self.file.flush()
        os.fsync(self.file.fileno())

    def close(self) -> None:
        self.file.close()
