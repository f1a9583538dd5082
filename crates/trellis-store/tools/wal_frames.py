#!/usr/bin/env python3
"""Which B-trees a store-bench save writes to the SQLite WAL, and what the commit costs.

Replays the store bench's write pattern (16 writers, saves of 10 new item values and their
10 audit rows, 16 saves per commit) on the schema built from this crate's SQLite
migrations, with Python's sqlite3, then reads the WAL's frame headers and names each
frame's page with the dbstat table. Only the write pattern is replayed (statement order,
row shapes and sizes); hashes and ids are random bytes of the right length.

    python3 crates/trellis-store/tools/wal_frames.py [--studies 16] [--page-size 4096] [--extra-sql FILE]

--extra-sql runs after the migrations (to try a schema change). Prints WAL frames and KiB
per save, the mean COMMIT time, and frames per save for each table and index.
"""
import argparse, collections, glob, os, struct, sqlite3, tempfile, time, uuid

ap = argparse.ArgumentParser()
ap.add_argument("--studies", type=int, default=1)
ap.add_argument("--page-size", type=int, default=4096)
ap.add_argument("--extra-sql")
ap.add_argument("--warm-commits", type=int, default=3000)
ap.add_argument("--commits", type=int, default=300)
args = ap.parse_args()

WRITERS, VALUES = 16, 10
here = os.path.dirname(os.path.abspath(__file__))
workdir = tempfile.TemporaryDirectory()  # removed at exit, with the replayed database
path = os.path.join(workdir.name, "replay.db")
c = sqlite3.connect(path, isolation_level=None)
c.execute(f"PRAGMA page_size={args.page_size}")
c.execute("PRAGMA journal_mode=WAL")
c.execute("PRAGMA wal_autocheckpoint=0")
c.execute("PRAGMA synchronous=FULL")
for m in sorted(glob.glob(os.path.join(here, "..", "migrations", "sqlite", "*.sql"))):
    c.executescript(open(m).read())
if args.extra_sql:
    c.executescript(open(args.extra_sql).read())

studies = [uuid.uuid4().bytes for _ in range(args.studies)]
subjects = [uuid.uuid4().bytes for _ in range(args.studies)]
site, actor = uuid.uuid4().bytes, uuid.uuid4().bytes
seq = [0] * args.studies
n = [0] * WRITERS
commit_seconds = [0.0]


def save(w):
    s = w % args.studies
    keys = [f"W{w}_{n[w]}_{j}" for j in range(VALUES)]
    for k in keys:
        c.execute("SELECT value FROM item_values WHERE study_id=? AND subject_id=? AND item_key=?",
                  (studies[s], subjects[s], k)).fetchall()
    for k in keys:
        seq[s] += 1
        c.execute(
            "INSERT INTO audit_entries (chain_id, seq, entry_id, recorded_at, actor_id, actor_name, action, "
            "entity_type, entity_id, field, old_value, new_value, reason, request_id, site_id, subject_id, "
            "prev_hash, hash) VALUES (?,?,?,?,?,?,?,?,?,?,?,?,?,?,?,?,?,?)",
            (studies[s], seq[s], uuid.uuid1().bytes, int(time.time() * 1e6), actor, "system", "create",
             "item", str(uuid.UUID(bytes=subjects[s])) + "/" + k, k, None, "120", None, None, site,
             subjects[s], os.urandom(32), os.urandom(32)))
    for k in keys:
        c.execute(
            "INSERT INTO item_values (study_id, subject_id, item_key, value, updated_at) VALUES (?,?,?,?,?) "
            "ON CONFLICT (study_id, subject_id, item_key) DO UPDATE SET value=excluded.value, updated_at=excluded.updated_at",
            (studies[s], subjects[s], k, "120", 1))
    n[w] += 1


def commit():
    c.execute("BEGIN IMMEDIATE")
    for w in range(WRITERS):
        save(w)
    for s in {w % args.studies for w in range(WRITERS)}:
        c.execute("INSERT OR REPLACE INTO chain_heads (chain_id, seq, hash) VALUES (?,?,?)",
                  (studies[s], seq[s], os.urandom(32)))
    t = time.perf_counter()
    c.execute("COMMIT")
    commit_seconds[0] += time.perf_counter() - t


for _ in range(args.warm_commits):
    commit()
c.execute("PRAGMA wal_checkpoint(TRUNCATE)")
commit_seconds[0] = 0.0
for _ in range(args.commits):
    commit()

frames = collections.Counter()
with open(path + "-wal", "rb") as f:
    f.read(32)
    while len(h := f.read(24)) == 24:
        frames[struct.unpack(">I", h[:4])[0]] += 1
        f.seek(args.page_size, 1)
owner = dict(c.execute("SELECT pageno, name FROM dbstat").fetchall())
by = collections.Counter()
for page, k in frames.items():
    by[owner.get(page, "?")] += k
saves = args.commits * WRITERS
total = sum(by.values())
print(f"studies={args.studies} page_size={args.page_size}: {total / saves:.2f} WAL frames per save, "
      f"{total * args.page_size / saves / 1024:.1f} KiB per save, COMMIT {commit_seconds[0] / args.commits * 1000:.2f} ms "
      f"per {WRITERS}-save commit")
for name, k in by.most_common():
    print(f"  {name:40s} {k / saves:.2f}")
