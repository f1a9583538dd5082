#!/usr/bin/env python3
"""Independent re-implementation of the Trellis audit-entry hash, encoding v1.

An auditor can use this to recompute a chain exported with `trellis audit export`
without trusting Trellis's code. Run it to print the known-answer hash that
`crates/trellis-audit/src/chain.rs` pins (entry 1 of the installation chain).
"""
import hashlib
import struct
import uuid

TAG = b"trellis.audit.v1\x00"


def put(out, b):
    if b is None:
        out.append(b"\x00")
    else:
        out.append(b"\x01" + struct.pack(">I", len(b)) + b)


def text(s):
    return None if s is None else s.encode("utf-8")


def body_bytes(e):
    out = []
    put(out, e["entry_id"].bytes)
    put(out, struct.pack(">q", e["recorded_at_us"]))
    put(out, e["actor_id"].bytes)
    for k in ("actor_name", "action", "entity_type", "entity_id", "field", "old_value", "new_value", "reason", "request_id"):
        put(out, text(e[k]))
    for k in ("site_id", "subject_id"):
        put(out, None if e[k] is None else e[k].bytes)
    return b"".join(out)


def entry_hash(chain_id, seq, prev_hash, e):
    h = hashlib.sha256()
    h.update(TAG)
    h.update(chain_id.bytes)
    h.update(struct.pack(">Q", seq))
    h.update(prev_hash)
    h.update(body_bytes(e))
    return h.hexdigest()


if __name__ == "__main__":
    e = dict(
        entry_id=uuid.UUID(int=2),
        recorded_at_us=1_700_000_000_000_001,
        actor_id=uuid.UUID(int=7),
        actor_name="Jane Doe",
        action="update",
        entity_type="subject",
        entity_id="S-1",
        field="status",
        old_value="screening",
        new_value="enrolled",
        reason=None,
        request_id=None,
        site_id=None,
        subject_id=uuid.UUID(int=99),
    )
    print(entry_hash(uuid.UUID(int=0), 1, bytes(32), e))
