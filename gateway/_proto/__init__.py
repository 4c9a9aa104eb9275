"""Generated code; regenerate with `python tools/gen_proto.py`."""
