"""Convert a checkpoint of an earlier asr-recipes version so that it loads without running code:
``python -m asr_recipes.bin.upgrade_checkpoint OLD.pt NEW.pt`` (see asr_recipes.checkpoint.upgrade).

The old file is unpickled with weights_only=False, which runs any code it carries: upgrade only
checkpoints you trust. Not Hydra: two file paths are the whole input.
"""

import argparse
import sys

from asr_recipes.checkpoint import CheckpointError
from asr_recipes.checkpoint.upgrade import WARNING, upgrade_checkpoint


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m asr_recipes.bin.upgrade_checkpoint",
                                     description=__doc__.split("\n\n")[0])
    parser.add_argument("old", help="the checkpoint to convert (trusted: it is unpickled)")
    parser.add_argument("new", help="where to write the converted checkpoint")
    args = parser.parse_args(argv)
    print(WARNING.format(path=args.old), file=sys.stderr)
    try:
        upgrade_checkpoint(args.old, args.new)
    except CheckpointError as e:
        print(f"upgrade_checkpoint: {e}", file=sys.stderr)
        return 1
    print(f"wrote {args.new}: it loads without running code", file=sys.stderr)
    return 0


if __name__ == "__main__":
    sys.exit(main())
