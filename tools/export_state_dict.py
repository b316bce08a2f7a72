#!/usr/bin/python3
"""Write a PyTorch state_dict as a safetensors file for stg_plan_load_safetensors.

    /usr/bin/python3 tools/export_state_dict.py MODEL.pt OUT.safetensors

MODEL.pt is what torch.save wrote: a state_dict, or a whole nn.Module (its
state_dict is taken).  Floating-point tensors are written as F32 (stgrad's
one dtype; --keep-dtype writes them as they are, which the loader then
refuses with a message), integer ones (BatchNorm's num_batches_tracked) as
I64, which the loader ignores.  From Python, save_safetensors(state_dict,
path) does the same.

The format: an 8-byte little-endian header length, a JSON header mapping
each name to {"dtype", "shape", "data_offsets": [begin, end]} (offsets
from the end of the header), then the tensors' little-endian bytes.
"""

import argparse
import json
import struct
import sys

DTYPES = {"float32": "F32", "float64": "F64", "float16": "F16", "bfloat16": "BF16",
          "int64": "I64", "int32": "I32", "int16": "I16", "int8": "I8", "uint8": "U8",
          "bool": "BOOL"}


def save_safetensors(state_dict, path, keep_dtype=False):
    """Writes the tensors of state_dict (name -> tensor) to path."""
    import torch

    header, blobs, offset = {}, [], 0
    for name, t in state_dict.items():
        t = t.detach().cpu().contiguous()
        if t.is_floating_point() and not keep_dtype:
            t = t.float()
        dtype = DTYPES[str(t.dtype).replace("torch.", "")]
        data = t.reshape(-1).view(torch.uint8).numpy().tobytes() if t.numel() else b""
        header[name] = {"dtype": dtype, "shape": list(t.shape),
                        "data_offsets": [offset, offset + len(data)]}
        blobs.append(data)
        offset += len(data)
    text = json.dumps(header, separators=(",", ":")).encode("utf-8")
    text += b" " * (-len(text) % 8)
    with open(path, "wb") as f:
        f.write(struct.pack("<Q", len(text)))
        f.write(text)
        for b in blobs:
            f.write(b)


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("model", help="a file torch.save wrote (a state_dict or a module)")
    ap.add_argument("out", help="the safetensors file to write")
    ap.add_argument("--keep-dtype", action="store_true",
                    help="write floating-point tensors in their own dtype, not F32")
    args = ap.parse_args()
    import torch

    obj = torch.load(args.model, map_location="cpu", weights_only=False)
    sd = obj.state_dict() if hasattr(obj, "state_dict") else obj
    if not isinstance(sd, dict):
        sys.exit("%s holds neither a state_dict nor a module" % args.model)
    save_safetensors(sd, args.out, args.keep_dtype)
    print("%s: %d tensors" % (args.out, len(sd)))


if __name__ == "__main__":
    main()
