"""``i2i`` with benchmark-only patches applied first (named in I2I_BENCH_PATCHES, comma-separated).

Used by bench_train.py to measure proposed engine changes as whole ``i2i run`` processes before
they are made. Patches: ``stream_checkpoint`` (proto_checkpoint.py).
"""

import os
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

for name in filter(None, os.environ.get("I2I_BENCH_PATCHES", "").split(",")):
    if name == "stream_checkpoint":
        import proto_checkpoint

        proto_checkpoint.patch()
    else:
        raise SystemExit(f"i2i_patched: unknown patch {name!r}")

from i2i.cli import main  # noqa: E402

sys.argv[0] = "i2i"
main()
