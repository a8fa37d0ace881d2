"""Wall time of commands that only read package data (``segunify taxonomy list``, ``segunify --help``)
beside the bare interpreter (``python -c pass``), printed as one JSON line.

Each round runs the three once, in turn (interleaved, so a busy machine slows all of them alike), as
fresh processes: ``python -m segunify ...`` is what the ``segunify`` console script runs. Reported per
command: min and median seconds over ``--rounds``, and whether torch was imported (checked in a separate
process that runs the same command in-process and reads ``sys.modules``).
"""

from __future__ import annotations

import argparse
import json
import statistics
import subprocess
import sys
import time

COMMANDS = {
    "python -c pass": ["-c", "pass"],
    "segunify taxonomy list": ["-m", "segunify", "taxonomy", "list"],
    "segunify --help": ["-m", "segunify", "--help"],
}
TORCH_PROBE = "import sys; from segunify.cli import main; main(sys.argv[1:]); print('torch' in sys.modules, file=sys.stderr)"


def wall(args: list[str]) -> float:
    start = time.perf_counter()
    subprocess.run([sys.executable, *args], check=True, stdout=subprocess.DEVNULL)
    return time.perf_counter() - start


def imports_torch(args: list[str]) -> bool:
    cmd = [sys.executable, "-c", TORCH_PROBE, *args[2:]]
    probe = subprocess.run(cmd, check=True, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
    return probe.stderr.strip().splitlines()[-1] == "True"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=10)
    args = parser.parse_args()
    times: dict[str, list[float]] = {name: [] for name in COMMANDS}
    for argv in COMMANDS.values():  # warm the file cache once
        wall(argv)
    for _ in range(args.rounds):
        for name, argv in COMMANDS.items():
            times[name].append(wall(argv))
    out = {"rounds": args.rounds, "goal_s": 0.5}
    for name, argv in COMMANDS.items():
        entry = {"min_s": round(min(times[name]), 3), "median_s": round(statistics.median(times[name]), 3)}
        if argv[0] == "-m":
            entry["imports_torch"] = imports_torch(argv)
        out[name] = entry
    print(json.dumps(out))


if __name__ == "__main__":
    main()
