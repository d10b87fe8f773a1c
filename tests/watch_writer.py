"""A stand-in for a training job, run as its own process by test_watch.py: copies checkpoints from a staging
folder into the run folder when told to on stdin, one of them in two halves (met mid-write). Standard library
only, so that it starts at once. Commands: `copy NAME`, `half NAME` (the first half, file left open),
`rest NAME` (the second half); each is answered `ok` once done.

    python watch_writer.py STAGING RUN
"""

import sys
from pathlib import Path


def main(staging: Path, run: Path) -> None:
    open_files = {}
    for line in sys.stdin:
        command, name = line.split()
        data = (staging / name).read_bytes()
        if command == "copy":
            (run / name).write_bytes(data)
        elif command == "half":
            open_files[name] = open(run / name, "wb")
            open_files[name].write(data[: len(data) // 2])
            open_files[name].flush()
        elif command == "rest":
            handle = open_files.pop(name)
            handle.write(data[len(data) // 2:])
            handle.close()
        print("ok", flush=True)


if __name__ == "__main__":
    main(Path(sys.argv[1]), Path(sys.argv[2]))
