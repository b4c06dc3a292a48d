"""One table from the ``--json`` files of several runs of the benchmark scripts.

Runs of the same methods over different seeds (say, seeds 0 to 4 and 5 to 9,
at the same time on two cores) join into one table, each median taken over
every seed's exact figures, not over the three decimals a run prints::

    python benchmarks/ablate.py ... --seeds 0 1 2 3 4 --json a.json
    python benchmarks/ablate.py ... --seeds 5 6 7 8 9 --json b.json
    python benchmarks/summarise.py a.json b.json
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

from _common import summarise


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("files", nargs="+", help="--json files of the runs")
    parser.add_argument("--time-label", default="time")
    parser.add_argument(
        "--allow-mixed",
        action="store_true",
        help="join files whose data or device differ (refused by default)",
    )
    args = parser.parse_args(argv)
    rows, metas, seen = [], [], {}
    for file in args.files:
        stored = json.loads(Path(file).read_text())
        meta = stored.get("meta", {})
        for row in stored["runs"]:
            key = (row["method"], row["seed"])
            if key in seen:
                raise SystemExit(
                    f"{row['method']!r} ran seed {row['seed']} in {seen[key]} and "
                    f"in {file}; a table counts each seed once."
                )
            seen[key] = file
            rows.append(row)
        metas.append(meta)
    for key in ("data", "device"):
        values = list(dict.fromkeys(str(m.get(key, "?")) for m in metas))
        if len(values) > 1 and not args.allow_mixed:
            raise SystemExit(
                f"The files' {key} differ ({'; '.join(values)}); their methods would "
                "pool into one median. Pass --allow-mixed to join them anyway."
            )
    data = "; ".join(dict.fromkeys(str(m.get("data", "?")) for m in metas))
    device = "; ".join(dict.fromkeys(str(m.get("device", "?")) for m in metas))
    commands = " and ".join(f"`{m.get('command', '?')}`" for m in metas)
    summarise(rows, data, device, commands.strip("`"), args.time_label)
    return rows


if __name__ == "__main__":
    main()
