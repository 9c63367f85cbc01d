"""Write the golden report files from today's code: the report of ``report_store.fill_v1``'s store, with run ids
replaced by ``run@<start>`` (``report_store.golden_text``). tests/test_report.py::test_the_report_is_the_golden_one
builds the same store and compares today's report with these files, byte for byte. After a change to the report made
on purpose, regenerate them and review the diff with the change:

    python tests/data/report_golden/make_golden.py && git diff tests/data/report_golden/
"""

import sys
import tempfile
from pathlib import Path

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE.parent.parent))  # tests/, for report_store

from report_store import GOLDEN_FILES, golden_report  # noqa: E402

with tempfile.TemporaryDirectory() as tmp:
    texts = golden_report(Path(tmp))
for name in GOLDEN_FILES:
    (HERE / name).write_text(texts[name], encoding="utf-8")
print(f"wrote {len(GOLDEN_FILES)} files to {HERE.relative_to(Path.cwd()) if HERE.is_relative_to(Path.cwd()) else HERE.name}")
