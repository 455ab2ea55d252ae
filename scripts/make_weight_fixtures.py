#!/usr/bin/env python3
"""Writes the small checkpoint fixtures of crates/bpgg/tests/it/weights.rs, without torch.

Usage: python3 scripts/make_weight_fixtures.py [OUT_DIR]   (default crates/bpgg/tests/fixtures/weights)

The torch file layouts are emulated with the standard pickle module: stand-in `torch` and
`torch._utils` modules are registered in sys.modules so that pickle writes exactly the GLOBAL
opcodes torch writes (`torch FloatStorage`, `torch._utils _rebuild_tensor_v2`,
`collections OrderedDict`), and storages are written as persistent ids, as torch.save does:

- legacy (torch < 1.6, `_legacy_save`): pickle(magic 0x1950a86a20f9469cfc6c), pickle(1001),
  pickle(sys_info), main pickle with persistent ids
  ('storage', storage_type, key, location, numel, view_metadata), pickle(sorted storage keys),
  then for each key: numel as int64 little-endian + raw little-endian data. Protocol 2.
- zip (torch >= 1.6, `_save`): <name>/data.pkl with persistent ids
  ('storage', storage_type, key, location, numel), <name>/data/<key> raw bytes,
  <name>/byteorder ("little"), <name>/version ("3\n"); entries stored uncompressed.

The expected values asserted by the Rust tests are stated next to each fixture below.
Deterministic: running it twice gives identical files.
"""
import collections
import io
import json
import os
import pickle
import random
import struct
import sys
import types
import zipfile

import numpy as np

# ---- stand-ins for the torch globals a state dict pickles -----------------------------------
torch_mod = types.ModuleType("torch")
utils_mod = types.ModuleType("torch._utils")


def _make_storage_type(name):
    cls = type(name, (), {})
    cls.__module__ = "torch"
    setattr(torch_mod, name, cls)
    return cls


FloatStorage = _make_storage_type("FloatStorage")
HalfStorage = _make_storage_type("HalfStorage")
LongStorage = _make_storage_type("LongStorage")


def _rebuild_tensor_v2(*args):
    raise RuntimeError("never called: only pickled by reference")


def _rebuild_parameter(*args):
    raise RuntimeError("never called: only pickled by reference")


_rebuild_tensor_v2.__module__ = "torch._utils"
_rebuild_parameter.__module__ = "torch._utils"
utils_mod._rebuild_tensor_v2 = _rebuild_tensor_v2
utils_mod._rebuild_parameter = _rebuild_parameter
torch_mod._utils = utils_mod
sys.modules["torch"] = torch_mod
sys.modules["torch._utils"] = utils_mod

DTYPES = {FloatStorage: np.float32, HalfStorage: np.float16, LongStorage: np.int64}
LEGACY_MAGIC = 0x1950A86A20F9469CFC6C
LEGACY_PROTOCOL = 1001


class Storage:
    """A flat storage: its key, torch type and numpy data."""

    def __init__(self, key, storage_type, data):
        self.key, self.storage_type = key, storage_type
        self.data = np.ascontiguousarray(data, dtype=DTYPES[storage_type]).ravel()


class Tensor:
    """A strided view of a storage, pickled as torch pickles tensors."""

    def __init__(self, storage, offset, size, stride, parameter=False):
        self.storage, self.offset, self.size, self.stride = storage, offset, size, stride
        self.parameter = parameter

    def __reduce__(self):
        rebuilt = (_rebuild_tensor_v2,
                   (self.storage, self.offset, tuple(self.size), tuple(self.stride), False,
                    collections.OrderedDict()))
        if self.parameter:
            return (_rebuild_parameter, (RebuildCall(*rebuilt), True, collections.OrderedDict()))
        return rebuilt


class RebuildCall:
    """Pickles as `func(*args)` (a tensor inside `_rebuild_parameter`)."""

    def __init__(self, func, args):
        self.func, self.args = func, args

    def __reduce__(self):
        return (self.func, self.args)


class TorchPickler(pickle.Pickler):
    def __init__(self, f, legacy):
        super().__init__(f, protocol=2)
        self.legacy = legacy
        self.storages = {}

    def persistent_id(self, obj):
        if not isinstance(obj, Storage):
            return None
        self.storages[obj.key] = obj
        base = ("storage", obj.storage_type, obj.key, "cpu", int(obj.data.size))
        return base + (None,) if self.legacy else base


def state_dict_bytes(state_dict, legacy):
    buf = io.BytesIO()
    pickler = TorchPickler(buf, legacy)
    pickler.dump(state_dict)
    return buf.getvalue(), pickler.storages


def legacy_bytes(state_dict):
    out = io.BytesIO()
    for header in (LEGACY_MAGIC, LEGACY_PROTOCOL,
                   {"protocol_version": LEGACY_PROTOCOL, "little_endian": True,
                    "type_sizes": {"short": 2, "int": 4, "long": 4}}):
        pickle.dump(header, out, protocol=2)
    main, storages = state_dict_bytes(state_dict, legacy=True)
    out.write(main)
    keys = sorted(storages)
    pickle.dump(keys, out, protocol=2)
    for key in keys:
        data = storages[key].data
        out.write(struct.pack("<q", data.size))
        out.write(data.astype(data.dtype.newbyteorder("<")).tobytes())
    return out.getvalue()


def zip_bytes(state_dict, archive):
    main, storages = state_dict_bytes(state_dict, legacy=False)
    out = io.BytesIO()
    with zipfile.ZipFile(out, "w", compression=zipfile.ZIP_STORED) as z:
        z.writestr(zipfile.ZipInfo(f"{archive}/data.pkl"), main)
        z.writestr(zipfile.ZipInfo(f"{archive}/byteorder"), b"little")
        for key in sorted(storages):
            z.writestr(zipfile.ZipInfo(f"{archive}/data/{key}"), storages[key].data.tobytes())
        z.writestr(zipfile.ZipInfo(f"{archive}/version"), b"3\n")
    return out.getvalue()


def with_metadata(state_dict):
    """torch attaches `_metadata` (module versions) to a state dict: pickled via BUILD."""
    state_dict._metadata = collections.OrderedDict([("", {"version": 1}),
                                                    ("bn", {"version": 2})])
    return state_dict


def tiny_state_dict():
    """The valid fixture. Expected values (asserted in crates/bpgg/tests/it/weights.rs):

    conv.weight  (2,3,1,2) f32: a non-contiguous (TensorFlow-style) view of storage "0" =
                 arange(12), offset 0, stride (1,2,12,6): value[o,i,0,w] = o + 2*i + 6*w.
    shared.a     (2,)   storage "1" = [10,11,12,13,14], offset 1: [11, 12]
    shared.b     (2,2)  the same storage, offset 1, stride (2,1): [[11,12],[13,14]]
    half.w       (3,)   f16 [0.5, -1.25, 2048] (exact in f32)
    bn.num_batches_tracked  ()  i64 7
    bn.weight    (2,)   a Parameter (through _rebuild_parameter) = [1.5, -2.5]
    """
    conv = Storage("0", FloatStorage, np.arange(12, dtype=np.float32))
    shared = Storage("1", FloatStorage, [10, 11, 12, 13, 14])
    half = Storage("2", HalfStorage, [0.5, -1.25, 2048])
    count = Storage("3", LongStorage, [7])
    bn = Storage("4", FloatStorage, [1.5, -2.5])
    sd = collections.OrderedDict()
    sd["conv.weight"] = Tensor(conv, 0, (2, 3, 1, 2), (1, 2, 12, 6))
    sd["shared.a"] = Tensor(shared, 1, (2,), (1,))
    sd["shared.b"] = Tensor(shared, 1, (2, 2), (2, 1))
    sd["half.w"] = Tensor(half, 0, (3,), (1,))
    sd["bn.num_batches_tracked"] = Tensor(count, 0, (), ())
    sd["bn.weight"] = Tensor(bn, 0, (2,), (1,), parameter=True)
    return with_metadata(sd)


# ---- hostile pickles, written opcode by opcode ------------------------------------------------
def legacy_prefix():
    out = io.BytesIO()
    for header in (LEGACY_MAGIC, LEGACY_PROTOCOL,
                   {"protocol_version": LEGACY_PROTOCOL, "little_endian": True,
                    "type_sizes": {"short": 2, "int": 4, "long": 4}}):
        pickle.dump(header, out, protocol=2)
    return out.getvalue()


# GLOBAL 'os system', then REDUCE ('echo pwned',): what a malicious .pth does.
OS_SYSTEM_PICKLE = (b"\x80\x02" + b"cos\nsystem\n" + b"X\x0a\x00\x00\x00echo pwned" + b"\x85R.")
# STACK_GLOBAL builtins.eval (protocol 4).
EVAL_PICKLE = (b"\x80\x04" + b"\x8c\x08builtins" + b"\x8c\x04eval" + b"\x93"
               + b"\x8c\x0d__import__('os')" + b"\x85R.")


def bad_offset_state_dict():
    s = Storage("0", FloatStorage, [1, 2, 3, 4])
    # offset 3 + (2-1)*1 = element 4 of a 4-element storage: out of bounds.
    return collections.OrderedDict([("w", Tensor(s, 3, (2,), (1,)))])


def huge_numel_bytes():
    """A legacy file whose persistent id declares 2**60 elements (8 EiB) but holds 4 bytes."""
    s = Storage("0", FloatStorage, [1.0])
    sd = collections.OrderedDict([("w", Tensor(s, 0, (1,), (1,)))])
    huge = ("storage", FloatStorage, "0", "cpu", 2 ** 60, None)

    class P(pickle.Pickler):
        def persistent_id(self, obj):
            return huge if isinstance(obj, Storage) else None

    buf = io.BytesIO()
    P(buf, protocol=2).dump(sd)
    out = legacy_prefix() + buf.getvalue()
    out += pickle.dumps(["0"], protocol=2) + struct.pack("<q", 1) + struct.pack("<f", 1.0)
    return out


def bad_safetensors_bytes():
    header = json.dumps({"w": {"dtype": "F32", "shape": [4], "data_offsets": [0, 4096]}}).encode()
    header += b" " * ((8 - len(header) % 8) % 8)
    return struct.pack("<Q", len(header)) + header + b"\x00" * 16


def good_safetensors_bytes():
    """Tensors a (2,2) f32 [[1,2],[3,4]], b (3,) f16 [0.5,1,-2], c (1,) i64 [5]."""
    tensors = [("a", "F32", [2, 2], np.array([1, 2, 3, 4], np.float32).tobytes()),
               ("b", "F16", [3], np.array([0.5, 1, -2], np.float16).tobytes()),
               ("c", "I64", [1], np.array([5], np.int64).tobytes())]
    header, data = {}, b""
    for name, dtype, shape, raw in tensors:
        header[name] = {"dtype": dtype, "shape": shape,
                        "data_offsets": [len(data), len(data) + len(raw)]}
        data += raw
    h = json.dumps(header).encode()
    h += b" " * ((8 - len(h) % 8) % 8)
    return struct.pack("<Q", len(h)) + h + data


def main():
    out_dir = sys.argv[1] if len(sys.argv) > 1 else "crates/bpgg/tests/fixtures/weights"
    os.makedirs(out_dir, exist_ok=True)
    files = {}
    legacy = legacy_bytes(tiny_state_dict())
    files["tiny_legacy.pth"] = legacy
    files["tiny_zip.pth"] = zip_bytes(tiny_state_dict(), "some_model_name")
    files["tiny.safetensors"] = good_safetensors_bytes()
    files["hostile_os_system.pth"] = legacy_prefix() + OS_SYSTEM_PICKLE
    files["hostile_eval_stack_global.pth"] = legacy_prefix() + EVAL_PICKLE
    z = io.BytesIO()
    with zipfile.ZipFile(z, "w", compression=zipfile.ZIP_STORED) as zf:
        zf.writestr("archive/data.pkl", OS_SYSTEM_PICKLE)
        zf.writestr("archive/version", b"3\n")
    files["hostile_os_system_zip.pth"] = z.getvalue()
    for cut in (10, 40, len(legacy) // 2, len(legacy) - 3):
        files[f"truncated_legacy_{cut}.pth"] = legacy[:cut]
    zipped = files["tiny_zip.pth"]
    files["truncated_zip.pth"] = zipped[: len(zipped) - 30]
    files["offset_out_of_bounds.pth"] = legacy_bytes(bad_offset_state_dict())
    files["huge_numel.pth"] = huge_numel_bytes()
    files["bad_offsets.safetensors"] = bad_safetensors_bytes()
    rng = random.Random(20221122)
    files["garbage.bin"] = bytes(rng.randrange(256) for _ in range(2048))
    for name, data in files.items():
        with open(os.path.join(out_dir, name), "wb") as f:
            f.write(data)
    total = sum(len(d) for d in files.values())
    print(f"wrote {len(files)} fixtures, {total} bytes, to {out_dir}")


if __name__ == "__main__":
    main()
