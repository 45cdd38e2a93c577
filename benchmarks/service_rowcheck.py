"""What checking every stored row costs the job service when it starts (``service/rowcheck.py``):
a SQLite service database with ``--rows`` audit rows (the table that grows without bound: one
row per mutating action) is made once, then ``check_rows`` reads it back ``--repeats`` times.
Prints one JSON line: rows, seconds per check (each repeat), microseconds per row (the median).

    python benchmarks/service_rowcheck.py --rows 1000000 --db /tmp/rowcheck.db
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
import statistics
import time
from pathlib import Path


def make_db(path: Path, rows: int) -> str:
    """A service database at ``path`` holding ``rows`` audit rows (made again when its count differs)."""
    from sqlalchemy import func, insert, select

    from deepseek_enterprise.service.models import AuditEntry
    from deepseek_enterprise.service.store import Store

    url = f"sqlite:///{path}"
    store = Store(url)
    with store.engine.connect() as conn:
        have = conn.execute(select(func.count()).select_from(AuditEntry)).scalar_one()
    if have != rows:
        store.engine.dispose()
        path.unlink()
        store = Store(url)
        at = dt.datetime.now(dt.timezone.utc).replace(tzinfo=None)
        with store.engine.begin() as conn:
            for start in range(0, rows, 50_000):
                conn.execute(insert(AuditEntry), [
                    {"at": at, "actor": "alice", "tenant": "acme", "action": "job.submit", "target": f"job {i}",
                     "result": "ok"} for i in range(start, min(rows, start + 50_000))])
    store.engine.dispose()
    return url


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rows", type=int, default=1_000_000)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--db", type=Path, default=Path("rowcheck.db"))
    args = parser.parse_args()
    from sqlalchemy import create_engine

    from deepseek_enterprise.service.rowcheck import check_rows

    url = make_db(args.db, args.rows)
    engine = create_engine(url)
    seconds = []
    for _ in range(args.repeats):
        start = time.perf_counter()
        check_rows(engine, url)
        seconds.append(time.perf_counter() - start)
    print(json.dumps({"rows": args.rows, "seconds": [round(s, 2) for s in seconds],
                      "us_per_row": round(statistics.median(seconds) / args.rows * 1e6, 2)}))


if __name__ == "__main__":
    main()
