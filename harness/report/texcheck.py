"""Checking the LaTeX tables: compiled with pdflatex/latexmk when a TeX engine is on PATH, else a syntactic check
(balanced braces, matched environments, booktabs rules, the same number of cells in every row of a tabular)."""

from __future__ import annotations

import re
import shutil
import subprocess
import tempfile
from dataclasses import dataclass, field
from pathlib import Path


@dataclass
class LatexCheck:
    engine: str | None  # the TeX engine used, None when only the syntax was checked
    ok: bool
    problems: list[str] = field(default_factory=list)
    log: str = ""

    @property
    def summary(self) -> str:
        how = f"compiled with {self.engine}" if self.engine else "no TeX engine found (pdflatex/latexmk): syntax check only"
        return f"LaTeX {'OK' if self.ok else 'FAILED'} ({how})" + ("" if self.ok else ": " + "; ".join(self.problems))


def find_engine() -> str | None:
    return next((name for name in ("pdflatex", "latexmk") if shutil.which(name)), None)


def syntax_problems(text: str) -> list[str]:
    """Problems a LaTeX engine would report that can be found without one."""
    text = re.sub(r"(?<!\\)%.*", "", text)  # comments
    problems, depth = [], 0
    for match in re.finditer(r"(?<!\\)[{}]", text):
        depth += 1 if match.group() == "{" else -1
        if depth < 0:
            problems.append(f"unbalanced '}}' at character {match.start()}")
            break
    if depth > 0:
        problems.append(f"{depth} unclosed '{{'")
    stack = []
    for kind, name in re.findall(r"\\(begin|end)\{([^}]*)\}", text):
        if kind == "begin":
            stack.append(name)
        elif not stack or stack.pop() != name:
            problems.append(f"\\end{{{name}}} without a matching \\begin")
    if stack:
        problems.append("unclosed environments: " + ", ".join(stack))
    for spec, body in re.findall(r"\\begin\{tabular\}\{([^}]*)\}(.*?)\\end\{tabular\}", text, flags=re.S):
        ncols = len(re.findall(r"[lrc]", spec))
        problems += [f"tabular without \\{rule}" for rule in ("toprule", "midrule", "bottomrule")
                     if f"\\{rule}" not in body]
        for row in re.split(r"\\\\", body):
            row = re.sub(r"\\(toprule|midrule|bottomrule|cmidrule(\([^)]*\))?\{[^}]*\})", "", row).strip()
            spans = sum(int(k) - 1 for k in re.findall(r"\\multicolumn\{(\d+)\}", row))
            cells = len(re.findall(r"(?<!\\)&", row)) + 1 + spans
            if row and cells != ncols:
                problems.append(f"a row has {cells} cells, the tabular {ncols}: {row[:60]!r}")
    return problems


def check_latex(main: Path) -> LatexCheck:
    """Compile ``main`` (with the files it inputs, from its folder) in a temporary folder, or check its syntax."""
    engine = find_engine()
    files = [main] + [main.parent / (name if name.endswith(".tex") else f"{name}.tex")
                      for name in re.findall(r"\\input\{([^}]*)\}", main.read_text())]
    if engine is None:
        problems = []
        for f in files:
            problems += ([f"{f.name}: {p}" for p in syntax_problems(f.read_text())] if f.is_file()
                         else [f"{f.name} is missing"])
        return LatexCheck(None, not problems, problems)
    with tempfile.TemporaryDirectory() as tmp:
        for f in files:
            shutil.copy(f, tmp)
        flags = ["-pdf"] if engine == "latexmk" else []
        try:
            proc = subprocess.run([engine, *flags, "-interaction=nonstopmode", "-halt-on-error", main.name], cwd=tmp,
                                  capture_output=True, text=True, timeout=120)
        except subprocess.TimeoutExpired:
            return LatexCheck(engine, False, [f"{engine} timed out"])
        ok = proc.returncode == 0 and (Path(tmp) / (main.stem + ".pdf")).is_file()
        errors = [line for line in proc.stdout.splitlines() if line.startswith("!")]
        return LatexCheck(engine, ok, errors or ([] if ok else [f"{engine} exited {proc.returncode}"]), proc.stdout[-4000:])
