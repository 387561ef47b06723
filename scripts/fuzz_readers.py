"""The long reader fuzzing run: mutate OBJ / PLY seeds for as long as asked, check each input.

Each input must load to a valid sample or raise ``hetload.io.ReadError``, within 2 s of CPU time
and 10x its size + 1 MiB of peak allocation (the contract in ``tests/fuzzing.py``). Seeds are the
generated ones plus every real file of at most 64 KiB in ``../shared/data/meshes``. Failures are
grouped by message, with the seed file and mutations that reproduce the first of each group.

    .venv/bin/python scripts/fuzz_readers.py --minutes 30 --seed 1

Prints a table per mutation kind (inputs, loaded, refused with ReadError, largest peak / size)
and exits 1 if any input broke the contract.
"""

from __future__ import annotations

import argparse
import random
import sys
import tempfile
import time
import warnings
from collections import Counter, defaultdict
from pathlib import Path

from tqdm import tqdm

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO / "tests"))

from fuzzing import (  # noqa: E402
    MUTATIONS,
    ContractError,
    corpus_seeds,
    generated_seeds,
    run_case,
)

CORPUS = REPO.parent / "shared" / "data" / "meshes"


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--minutes", type=float, default=10.0, help="how long to run")
    parser.add_argument("--seed", type=int, default=0, help="seed of the input choice")
    parser.add_argument("--max-steps", type=int, default=3, help="mutations per input (1..N)")
    parser.add_argument("--corpus", type=Path, default=CORPUS, help="real files to mutate")
    args = parser.parse_args()
    warnings.simplefilter("ignore")  # numpy's overflow / empty-input warnings on damaged data

    seeds = generated_seeds()
    seeds.update(corpus_seeds(args.corpus))
    names = sorted(seeds)
    rng = random.Random(args.seed)
    kinds = sorted(MUTATIONS)
    per_kind: dict[str, Counter] = defaultdict(Counter)
    worst: dict[str, float] = defaultdict(float)  # largest peak memory / its bound
    slowest: dict[str, float] = defaultdict(float)  # most CPU seconds of one load
    failures: dict[str, list] = {}  # message -> [seed file, mutations, count]
    total = Counter()
    deadline = time.monotonic() + args.minutes * 60
    with tempfile.TemporaryDirectory() as tmp, tqdm(unit="input", desc="fuzzing") as bar:
        workdir = Path(tmp)
        while time.monotonic() < deadline:
            name = rng.choice(names)
            steps = [
                (rng.choice(kinds), rng.randrange(2**32))
                for _ in range(rng.randint(1, args.max_steps))
            ]
            try:
                outcome = run_case(name, seeds[name], steps, workdir)
                result = outcome.result
                share, cpu = outcome.memory_share, outcome.cpu_seconds
            except ContractError as exc:
                result, share, cpu = "broken", 0.0, 0.0
                key = str(exc).split("\n")[0]
                failures.setdefault(key, [name, steps, 0])[2] += 1
            total[result] += 1
            for kind, _ in steps:
                per_kind[kind][result] += 1
                worst[kind] = max(worst[kind], share)
                slowest[kind] = max(slowest[kind], cpu)
            bar.update(1)
            if bar.n % 256 == 0:
                bar.set_postfix(broken=total["broken"], refused=total["read_error"])

    width = max(len(k) for k in kinds)
    print(
        f"\n{len(seeds)} seed files ({len(seeds) - len(generated_seeds())} real), seed {args.seed}"
    )
    print(
        f"{'mutation':<{width}}  {'inputs':>8}  {'loaded':>8}  {'ReadError':>9}  {'broken':>6}  "
        f"{'max memory/bound':>16}  {'max CPU s':>9}"
    )
    for kind in kinds:
        c = per_kind[kind]
        n = sum(c.values())
        print(
            f"{kind:<{width}}  {n:>8}  {c['ok']:>8}  {c['read_error']:>9}  {c['broken']:>6}  "
            f"{worst[kind]:>16.1%}  {slowest[kind]:>9.3f}"
        )
    n = sum(total.values())
    print(
        f"{'all inputs':<{width}}  {n:>8}  {total['ok']:>8}  {total['read_error']:>9}  "
        f"{total['broken']:>6}"
    )
    for message, (name, steps, count) in sorted(failures.items(), key=lambda kv: -kv[1][2]):
        print(f"\n{count} x {message}\n  reproduce: seed file {name}, mutations {steps}")
    return 1 if failures else 0


if __name__ == "__main__":
    sys.exit(main())
