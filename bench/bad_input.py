"""How fast hostile YAML is refused, against the floor of parsing the shipped prompt set.

Run by hand: ``.venv/bin/python bench/bad_input.py [N]``. Each input is parsed N times
with ``bot.yamlsource.parse_yaml`` (what ``validate``, ``run`` and live reload use); prints
the median and worst time per input and its ratio to the floor (the shipped
``prompts/ai-research-culture.yaml``, a valid 6 KiB file). Target: every hostile input
is refused well under a second, in the same order of time as a normal file.
"""

from __future__ import annotations

import statistics
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from bot.yamlsource import ProblemsFound, parse_yaml  # noqa: E402

BOMB = "a: &a [lol, lol, lol, lol, lol, lol, lol, lol, lol, lol]\n" + "".join(
    f"{chr(98 + i)}: &{chr(98 + i)} [{', '.join([f'*{chr(97 + i)}'] * 10)}]\n" for i in range(8)
)
INPUTS = {
    "floor: shipped prompt set": (ROOT / "prompts" / "ai-research-culture.yaml").read_text("utf-8"),
    "alias bomb (10^9 values)": BOMB,
    "flow nesting x100000": "a: " + "[" * 100_000 + "]" * 100_000 + "\n",
    "block nesting x1000": "".join("  " * i + f"k{i}:\n" for i in range(1000)),
    "recursive alias": "a: &x [1, *x]\n",
    "control character": "title: ok\nsummary: a\x08b\n",
    "5000-digit number": "title: " + "9" * 5000 + "\n",
}


def measure(text: str, n: int) -> list[float]:
    times = []
    for _ in range(n):
        start = time.perf_counter()
        try:
            parse_yaml(text, "bench.yaml")
        except ProblemsFound:
            pass
        times.append(time.perf_counter() - start)
    return times


def main() -> None:
    n = int(sys.argv[1]) if len(sys.argv) > 1 else 20
    results = {name: measure(text, n) for name, text in INPUTS.items()}
    floor = statistics.median(next(iter(results.values())))
    print(f"{'input':32} {'bytes':>8} {'median ms':>10} {'worst ms':>10} {'x floor':>8}")
    for name, times in results.items():
        median = statistics.median(times)
        print(
            f"{name:32} {len(INPUTS[name].encode()):>8} {median * 1000:>10.2f} "
            f"{max(times) * 1000:>10.2f} {median / floor:>8.2f}"
        )


if __name__ == "__main__":
    main()
