"""Device specifications: names, counts and device types for parse_devices, parameter-server
device lists for rewrite(ps_devices=...), and the spellings of one device (`spelled`)."""

from __future__ import annotations

from hypothesis import strategies as st

DEVICE_NAMES = (
    "/gpu:0", "gpu:1", "/device:GPU:0", "/device:GPU:1", "/cpu:0", "cpu:1", "/device:CPU:2",
    "/job:ps/task:0/device:CPU:0", "/job:worker/replica:0/task:1/device:GPU:3", "/device:GPU:*", "GPU", "/gpu",
    "/device:TPU:0", "/device:XLA_GPU:0", "", " ", "/gpu:-1", "/gpu:99999999999999999999", "/gpu:0,/gpu:1",
    "/job:a:b", "/replica:x", "/task:1", "//", "/device:GPU:0/device:GPU:1", "gpu:1 ", "\t/cpu:3\n",
    "/device:gpu:0", "/job:ps", "/job:ps/device:CPU:0", "/job:localhost/replica:0/task:0/device:CPU:1",
)  # fmt: skip
COUNT_STRINGS = (
    "1", "2", " 3 ", "+4", "-1", "-0", "0", "00", "4.0", "1e3", "0x10", "٣", "²", "①", "४", "3 4", "",
    "9" * 3, "1" + "0" * 30, "-" + "9" * 30, "2,", ",2", "８",
)  # fmt: skip
DEVICE_TYPES = ("GPU", "CPU", "gpu", "cpu", "Gpu", " GPU", "GPU ", "TPU", "", "ＧＰＵ", "cpu:0", "ß", "ǆ")


def _count_of(spec) -> int | None:
    """The tower count `spec` asks for, if it is a count (as parse_devices reads it), else None."""
    if isinstance(spec, int):
        return spec
    s = spec.strip() if isinstance(spec, str) else None
    if s is not None and s.lstrip("-").isascii() and s.lstrip("-").isdigit():
        return int(s)
    return None


PS_DEVICES = (
    (),
    (),
    ("/job:ps/task:0/device:CPU:0",),
    ("/job:ps/task:0/device:CPU:0", "/job:ps/task:1/device:CPU:0"),
    ("/job:ps/task:0/device:CPU:0", "/job:ps/task:0/device:CPU:0"),
    ("/cpu:0",),
    ("bogus",),
    ("",),
)
device_spec_st = st.one_of(
    st.integers(-(10**9), 64),
    st.sampled_from([10**3, 10**5]),
    st.sampled_from(COUNT_STRINGS),
    st.lists(st.sampled_from(DEVICE_NAMES), max_size=6),
    st.lists(st.sampled_from(DEVICE_NAMES), max_size=6).map(",".join),
    st.text(max_size=20),
    st.lists(st.text(max_size=10), max_size=4),
)


# -- spellings of one device -----------------------------------------------------------------
# A device is (job, task, type, index); job None is the local machine. What may vary in its name
# without changing the device: the implied parts on one machine (job localhost, replica 0, task
# 0) and replica 0 elsewhere, `device:` before the type or not, the type's case (after `device:`
# upper or lower only: TensorFlow reads `/device:Gpu:0` as a device type `Gpu`, which it does not
# have), a leading slash on a bare type, and blanks around a list item.
DEVICES = st.tuples(
    st.sampled_from([None, None, "worker", "ps"]),
    st.integers(0, 2),
    st.sampled_from(["CPU", "GPU"]),
    st.integers(0, 3),
).map(lambda d: d if d[0] else (None, 0, d[2], d[3]))


def canonical_name(device) -> str:
    """The one name graphpass gives `device` (job, task, type, index)."""
    job, task, dtype, index = device
    return f"/device:{dtype}:{index}" if job is None else f"/job:{job}/task:{task}/device:{dtype}:{index}"


@st.composite
def spelled(draw, device) -> str:
    """One spelling of `device`."""
    job, task, dtype, index = device
    local = job is None
    parts = []
    if not local or draw(st.booleans()):
        parts.append(f"/job:{job or 'localhost'}")
    if draw(st.booleans()):
        parts.append("/replica:0")
    if not local or draw(st.booleans()):
        parts.append(f"/task:{task}")
    short = draw(st.booleans())
    cases = [dtype, dtype.lower()] + ([dtype.capitalize(), dtype[0].lower() + dtype[1:]] if short else [])
    kind = draw(st.sampled_from(cases))
    tail = f"{kind}:{index}" if short else f"device:{kind}:{index}"
    if short and not parts and draw(st.booleans()):
        name = tail  # "cpu:0"
    else:
        name = "".join(parts) + "/" + tail
    return draw(st.sampled_from(["", " ", "\t"])) + name + draw(st.sampled_from(["", " "]))
