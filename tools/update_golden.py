"""Regenerate the golden rewrites in tests/golden/ on purpose; review the diff before committing.

python tools/update_golden.py          # every case
python tools/update_golden.py --check  # exit 1 if any golden file would change
"""

from __future__ import annotations

import os
import sys
from pathlib import Path

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

GOLDEN = ROOT / "tests" / "golden"
FIXTURES = ROOT / "tests" / "fixtures"

# (rules, fixture, towers, device type): the shipped presets on the small MLP, as users run them,
# then each registered all-reduce algorithm that no preset uses, in a minimal replicated pipeline
# (rules `allreduce-<algorithm>`), so a new algorithm gets a golden case without being listed here.
PRESETS = [
    "replicated-nccl",
    "replicated-collective",
    "replicated-hierarchical",
    "replicated-ring",
    "replicated-naive",
    "ps-naive",
    "ps-least-loaded",
    "ps-balanced",
]
ALGORITHM_RULES = "passes:\n  - replicate: {{mode: replicated}}\n  - allreduce: {{algorithm: {}}}\n"


def preset_algorithms() -> set[str]:
    """The all-reduce algorithms the shipped presets use."""
    from graphpass.pipeline import Pipeline

    return {p.algorithm for preset in PRESETS for p in Pipeline.load(preset).passes if p.name == "allreduce"}


def algorithm_cases() -> list[str]:
    """`allreduce-<name>` for every registered algorithm no preset covers."""
    from graphpass import algorithms

    covered = preset_algorithms()
    return [f"allreduce-{name}" for name in algorithms.names() if name not in covered]


CASES = [(rules, "mlp_sgd", 2, "GPU") for rules in PRESETS + algorithm_cases()]


def golden_path(rules: str, model: str, towers: int, device_type: str) -> Path:
    return GOLDEN / rules / f"{model}_k{towers}_{device_type.lower()}.pbtxt"


def pipeline(rules: str):
    """A preset's name as it is, or the pipeline an `allreduce-<algorithm>` case stands for."""
    from graphpass.pipeline import Pipeline

    if rules.startswith("allreduce-"):
        algorithm = rules[len("allreduce-") :]
        return Pipeline.from_yaml(ALGORITHM_RULES.format(algorithm), source=rules)
    return rules


def render(rules: str, model: str, towers: int, device_type: str) -> str:
    import graphpass
    from graphpass.io import serialize

    out = graphpass.rewrite(
        FIXTURES / f"{model}.pb", devices=towers, rules=pipeline(rules), device_type=device_type
    )
    return serialize(out, text=True).decode()


def main(argv: list[str]) -> int:
    check = "--check" in argv
    stale = 0
    for case in CASES:
        path = golden_path(*case)
        text = render(*case)
        old = path.read_text() if path.exists() else None
        if old == text:
            continue
        stale += 1
        if check:
            print(f"stale: {path.relative_to(ROOT)}")
            continue
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(text)
        print(f"{'updated' if old else 'created'}: {path.relative_to(ROOT)}")
    return 1 if check and stale else 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
