"""torchrun for ``i2i run --nproc``: torch's own launcher (``torch.distributed.run``), with its
account of a failed worker cut to what the worker did not say itself.

A worker that fails prints its own one-line error (a user's mistake exits 2, as in one process);
torchrun then added a Python traceback, a ``ChildFailedError`` report and a "Sending process N
closing signal SIGTERM" line per worker: some 40 lines under one that said it all. This runs
torchrun unchanged and, when a worker fails, exits with that worker's status, saying one line
only when the worker could not (ended by a signal: the out-of-memory killer, ``kill -9``).

    python -m i2i.engine.torchrun --standalone --nproc-per-node N -m i2i run ...
"""

from __future__ import annotations

import logging
import sys


def main(argv: list[str] | None = None) -> int:
    """Run torchrun with ``argv`` (default: this process's arguments); its exit status."""
    from torch.distributed.elastic.multiprocessing.errors import ChildFailedError
    from torch.distributed.run import main as torchrun

    # "Sending process N closing signal SIGTERM" for each worker it ends once one has failed, and
    # "failed (exitcode: 2) local_rank: 1 ...": the worker said so itself
    logging.getLogger("torch.distributed.elastic").setLevel(logging.CRITICAL)
    try:
        torchrun(argv)
    except ChildFailedError as exc:
        rank, failure = exc.get_first_failure()
        if failure.exitcode > 0:  # the worker printed why (an i2i error, or its own traceback)
            return failure.exitcode
        print(f"i2i: error: rank {rank} was ended by {failure.signal_name()} without a word (the out-of-memory "
              "killer, or a kill from outside); the other ranks were stopped with it", file=sys.stderr, flush=True)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
