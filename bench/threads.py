"""The embedded model's llama.cpp thread count: 1 vs all cores vs the default (the cores idle now).

    uv run --all-extras python -m bench.threads --label quiet     # nothing else running
    uv run --all-extras python -m bench.threads --label busy      # with other work on the cores

llama.cpp's threads spin-wait for each other, so a thread on a core that another process holds
stalls the rest. promptlift's default reads /proc/stat for 0.2 s and uses the cores idle then
(``providers.local.free_cores``). Each setting loads its own model and answers the same 200-token
prompts (each starting with a different number, so no KV-cache reuse), 20 tokens greedily; the
settings take turns call by call so a change in the machine's load hits them alike.
"""

from __future__ import annotations

import argparse
import os
import statistics
import time

from bench.common import save
from bench.local_model import prompt


def main(label: str, calls: int) -> None:
    import llama_cpp

    from promptlift.providers.local import free_cores, spec_for, weights_path

    path = str(weights_path(spec_for("gemma-3-270m")))
    cores = os.cpu_count() or 1
    chosen = free_cores() or cores
    settings = {"1 thread": 1, f"all cores ({cores})": cores, f"default (chose {chosen})": chosen}
    models = {
        name: llama_cpp.Llama(model_path=path, n_ctx=1024, n_threads=n, n_threads_batch=n, verbose=False)
        for name, n in settings.items()
    }
    seconds: dict[str, list[float]] = {name: [] for name in settings}
    for i in range(calls):
        for name, llm in models.items():
            started = time.perf_counter()
            llm.create_completion(prompt(i * 10 + len(seconds[name])), max_tokens=20, temperature=0)
            seconds[name].append(time.perf_counter() - started)
    rows = {
        name: {"median_s": statistics.median(v), "max_s": max(v), "calls": len(v)}
        for name, v in seconds.items()
    }
    for name, row in rows.items():
        print(f"{name:22} median {row['median_s']:.2f} s  max {row['max_s']:.2f} s")
    save(f"threads_{label}", {"load_average": os.getloadavg(), "free_cores": chosen, "rows": rows})


if __name__ == "__main__":
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--label", required=True, help="quiet or busy: names the results file")
    p.add_argument("--calls", type=int, default=6)
    args = p.parse_args()
    main(args.label, args.calls)
