"""Run every benchmark in bench/ in turn and print their figures (`make bench`).

Each benchmark is a standalone script; this runs them as subprocesses so one
failing (say, no GPU for bench/generation.py) does not hide the others.
"""

import subprocess
import sys
from pathlib import Path

BENCH_DIR = Path(__file__).resolve().parent


def main() -> int:
    failures = []
    for script in sorted(BENCH_DIR.glob("*.py")):
        if script.name in {"run_all.py", "__init__.py"} or script.name.startswith("_"):
            continue
        print(f"\n=== {script.name} ===", flush=True)
        result = subprocess.run([sys.executable, str(script)], cwd=BENCH_DIR.parent)
        if result.returncode != 0:
            failures.append(script.name)
    if failures:
        print(f"\nBenchmarks that failed: {', '.join(failures)}")
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
