"""Write the golden report files: the report of ``report_store.fill_v1``'s store, as built by the report at commit
ce902b1 (before the pandas/jinja2 rewrite), with run ids replaced by ``run@<start>`` and the store's folder by
``<store>``. Regenerate only from that commit's report:

    git archive ce902b1 | tar -x -C /tmp/report-old
    PYTHONPATH=/tmp/report-old python tests/data/report_golden/make_golden.py

tests/test_report_golden.py builds the same store and compares today's report with these files.
"""

import shutil
import sys
import tempfile
from pathlib import Path

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE.parent.parent))  # tests/, for report_store

from report_store import Store, fill_v1, replace_ids, stable_ids  # noqa: E402

from harness.report.build import Options, build_report  # noqa: E402

FILES = [f"table{i}{ext}" for i in (1, 2, 3) for ext in (".md", ".csv", "_long.csv", ".tex")] + [
    "claims.md", "claims.csv", "provenance.md", "provenance_runs.csv"]

with tempfile.TemporaryDirectory() as tmp:
    store = Store(Path(tmp) / "mlflow.db")
    fill_v1(store)
    out = Path(tmp) / "report"
    build_report(Options(store.uri, out, samples=False))
    ids = stable_ids(store.uri)
    for name in FILES:
        text = replace_ids((out / name).read_text(encoding="utf-8"), ids).replace(tmp, "<store>")
        (HERE / name).write_text(text, encoding="utf-8")
    shutil.rmtree(out)
print(f"wrote {len(FILES)} files to {HERE}")
