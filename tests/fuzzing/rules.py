"""Rules documents: built as data (mostly well-formed passes with odd option values) and as text
(templates, presets with character edits, deep nesting, anchors, random text). Pass, algorithm and
preset names come from graphpass's registries (see harness)."""

from __future__ import annotations

import yaml
from hypothesis import strategies as st

from .harness import PRESETS, algorithm_names, pass_names

PASS_NAMES = pass_names()
ALGORITHMS = algorithm_names()
OPTION_VALUES = {
    "mode": ["replicated", "parameter_server", "mirrored", "", None, 1],
    "ps_device": ["/cpu:0", "/gpu:1", "/job:ps/task:0/device:CPU:0", "bogus", "", "gpu", "/gpu:99999999999"],
    "check_batch": [True, False, "yes", 0],
    "strategy": ["least-loaded", "balanced", "round-robin", "random", None],
    "devices": [["/cpu:0", "/cpu:1"], ["/cpu:0", "/cpu:0"], ["gpu:1"], [], ["bogus"], "/cpu:0", [1, 2], [""]],
    "small_bytes": [0, 1, 4096, -1, 10**30, 2.5, "4096"],
    "small_device": ["/cpu:0", "/gpu:3", "bogus", "", None],
    "num_split": [1, 2, 8, 0, -3, 10**20, 1.0, None],
    "bucket_bytes": [1, 4, 4096, 0, -1, 10**20, None],
    "min_pack_elements": [1, 1024, 0, -1, 10**20],
    "algorithm": ALGORITHMS + ["NCCL", "x"],  # every algorithm, a wrong case and a typo
    "average": [True, False, "true", None],
    "communication_hint": ["auto", "ring", "nccl", "RING", None],
}


def _yaml_scalars():
    return st.one_of(
        st.none(),
        st.booleans(),
        st.integers(-(2**70), 2**70),
        st.floats(allow_nan=True, allow_infinity=True),
        st.text(max_size=12),
        st.sampled_from(
            ["replicate", "allreduce", "nccl", "/cpu:0", "passes", "ｒｅｐｌｉｃａｔｅ", "☃", "\x85"]
        ),
    )


yaml_values = st.recursive(
    _yaml_scalars(),
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=8), inner, max_size=4),
    max_leaves=12,
)


@st.composite
def structured_rules(draw):
    """A rules document built as data: mostly well-formed passes with odd option values."""

    def option_value(key):
        if key in OPTION_VALUES and draw(st.integers(0, 4)):
            return draw(st.sampled_from(OPTION_VALUES[key]))
        return draw(yaml_values)

    def a_pass():
        name = draw(st.sampled_from(PASS_NAMES) | st.sampled_from(["shuffle", "", "Replicate", "allreduce "]))
        shape = draw(st.integers(0, 5))
        if shape == 0:
            return name
        if shape == 5:
            return draw(yaml_values)
        keys = draw(st.lists(st.sampled_from(sorted(OPTION_VALUES)) | st.text(max_size=6), max_size=3))
        return {name: {k: option_value(k) for k in keys} if keys or draw(st.booleans()) else None}

    passes = [a_pass() for _ in range(draw(st.integers(0, 5)))]
    if draw(st.integers(0, 3)):  # usually start with replicate, so later passes get to run
        passes.insert(0, draw(st.sampled_from(["replicate", {"replicate": {"mode": "parameter_server"}}])))
    if draw(st.integers(0, 2)):
        passes.append({"allreduce": {"algorithm": draw(st.sampled_from(ALGORITHMS))}})
    doc: object = {"passes": passes}
    extra = draw(st.integers(0, 7))
    if extra == 0:
        doc["description"] = draw(yaml_values)
    elif extra == 1:
        doc[draw(st.text(max_size=6))] = draw(yaml_values)
    elif extra == 2:
        doc = draw(yaml_values)  # not a mapping, or a mapping of anything
    text = yaml.safe_dump(doc, allow_unicode=draw(st.booleans()), default_flow_style=draw(st.booleans()))
    return text


RULES_TEMPLATES = [
    "",
    "   \n# only a comment\n",
    "---\n",
    "passes:\n",
    "passes: ~\n",
    "passes: []\n",
    "passes: {}\n",
    "passes: replicate\n",
    "- replicate\n",
    "replicate\n",
    "42\n",
    "passes:\n  - replicate\n  - allreduce: {algorithm: collective}\n---\npasses: []\n",
    "a: &a {algorithm: collective}\npasses:\n  - replicate\n  - allreduce: *a\n",
    "passes:\n  - replicate\n  - allreduce:\n      <<: {algorithm: naive}\n      average: false\n",
    "passes: &p\n  - replicate\n  - *p\n",
    "passes: &p [replicate, *p]\n",
    "passes:\n  - replicate: &o {mode: replicated}\n  - allreduce: *o\n",
    "passes:\n  - *undefined\n",
    "passes:\n  - replicate\n  - allreduce: {algorithm: !!binary aGVsbG8=}\n",
    "passes:\n  - replicate\n  - allreduce: {average: !!timestamp 2001-12-14}\n",
    "passes:\n  - replicate\n  - allreduce: {algorithm: !!python/object/apply:os.getcwd []}\n",
    "passes:\n  - replicate\n  - allreduce: {algorithm: !custom x}\n",
    "passes:\n  - replicate\n  - pack-gradients: {num_split: !!set {a, b}}\n  - allreduce: {algorithm: naive}\n",
    "passes:\n  - replicate\n  - pack-gradients: {num_split: 1e400}\n  - allreduce: {algorithm: naive}\n",
    "passes:\n  - replicate\n  - pack-gradients: {num_split: 0x7fffffffffffffffffffffff}\n  - allreduce: {algorithm: naive}\n",
    "passes:\n  - replicate\n  - pack-gradients: {bucket_bytes: .inf}\n  - allreduce: {algorithm: naive}\n",
    "passes:\n  - replicate\n  - pack-gradients: {num_split: .nan}\n  - allreduce: {algorithm: naive}\n",
    "passes:\n  - replicate\n  - pack-gradients: {num_split: 1_000}\n  - allreduce: {algorithm: ring}\n",
    "passes:\n  - replicate\n  - pack-gradients: {num_split: 0o17}\n  - allreduce: {algorithm: ring}\n",
    "passes:\n  - replicate\n  - allreduce: {algorithm: collective, algorithm: naive}\n",
    "passes:\n  - replicate\n  - ? [allreduce]\n    : {}\n",
    "passes:\n  - replicate\n  - {allreduce: {}, replicate: {}}\n",
    "passes:\n  - replicate\n  - allreduce: {? [a, b] : c}\n",
    "passes:\n\t- replicate\n",
    "\ufeffpasses:\n  - replicate\n  - allreduce: {algorithm: naive}\n",
    'passes:\n  - replicate\n  - allreduce: {algorithm: "na\\x00ive"}\n',
    "passes:\n  - replicate\x00\n",
    'passes:\n  - "line\\nbreak"\n',
    'passes:\n  - replicate\n  - "allreduce\\nx": {}\n',
    '"key\\nwith newline": 1\npasses: [replicate]\n',
    'passes:\n  - replicate:\n      "opt\\nion": 1\n',
    'passes:\n  - replicate:\n      mode: "para\\nmeter"\n',
    "%YAML 1.1\n---\npasses: [replicate, allreduce]\n",
    "%YAML 9.9\n---\npasses: [replicate]\n",
    "%TAG ! tag:example.com,2000:\n---\npasses: [!foo replicate]\n",
    "passes: [replicate, {place-variables: {devices: [/cpu:0, /cpu:0]}}]\n",
    "passes:\n  - replicate: {mode: parameter_server, ps_device: 'gpu:0'}\n  - place-variables: {devices: ['/job:ps/task:0/device:CPU:0'], small_bytes: 99999999999999999999}\n  - allreduce: {algorithm: colocate}\n",
    "passes: [{replicate: {mode: parameter_server}}, {place-variables: {strategy: balanced, devices: [x]}}, {allreduce: {algorithm: colocate}}]\n",
]


def _deep(depth: int, style: int) -> str:
    if style == 0:
        return "passes: " + "[" * depth + "]" * depth + "\n"
    if style == 1:
        return "passes: " + "{a: " * depth + "1" + "}" * depth + "\n"
    if style == 2:
        body = "".join("  " * k + "- \n" for k in range(depth))
        return "passes:\n" + body
    # anchors and aliases fanning out (a "billion laughs" shape, small)
    lines = ["a0: &a0 [x, x]"] + [f"a{k}: &a{k} [*a{k - 1}, *a{k - 1}]" for k in range(1, min(depth, 30))]
    return "\n".join(lines) + "\npasses: [replicate]\n"


ALPHABET = ":-[]{}&*!|>'\"#%@`,? \n\t\x00\ufeff\u2028é0123456789abcdefgnrlptx"


@st.composite
def text_rules(draw):
    """Rules text: templates, presets with character edits, deep nesting, anchors, random text."""
    from graphpass.pipeline import presets_dir

    kind = draw(st.integers(0, 9))
    if kind <= 2:
        return draw(st.sampled_from(RULES_TEMPLATES))
    if kind == 3:
        return _deep(draw(st.sampled_from([5, 50, 200, 400, 800, 1500, 3000])), draw(st.integers(0, 3)))
    if kind == 4:
        return draw(st.text(max_size=80))
    base = draw(st.sampled_from(PRESETS + ["__template__"]))
    text = (
        draw(st.sampled_from(RULES_TEMPLATES))
        if base == "__template__"
        else (presets_dir() / f"{base}.yaml").read_text()
    )
    for _ in range(draw(st.integers(1, 4))):
        pos = draw(st.integers(0, len(text)))
        op = draw(st.integers(0, 2))
        ch = draw(st.sampled_from(ALPHABET))
        if op == 0:
            text = text[:pos] + ch + text[pos:]
        elif op == 1:
            text = text[:pos] + text[pos + 1 :]
        else:
            text = text[:pos] + ch + text[pos + 1 :]
    return text
