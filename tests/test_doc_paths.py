"""Every path the README, docs/ and the ``--help`` texts name exists after a finished run
(issue 14, Build 7), and every module they name exists (issue 21).

Paths are taken from code (fenced blocks, ``inline code``) and link targets. A path under
``results/<run>/`` (or written relative to it: ``tables/...``, ``manifold/...``) is checked in a
finished run of tests/integration/tiny.yaml with its report built (what ``make demo`` leaves):
``<run>`` and ``results/default`` stand for that run (tiny.yaml only shrinks the default
config), ``<cat>``/``<category>`` for each of its categories, ``<variant>`` for its manifold
variant, any other ``<...>``/``{...}``/``*`` for "some file". A path that a finished run does not
hold must at least be a file the workflow can make (``snakemake -n <path>`` plans it: the
ablation target, the other variant's stages). Repository paths must exist in the checkout.
Paths of another config's run (``results/pfwillow/``, ``results/paper/``) and outside the
repository are listed as skipped.

Module names written as ``sopcorr.a.b`` (a module, or an attribute of one: ``sopcorr.a.b.f``)
must import, and docs/ARCHITECTURE.md's module table must list each package's submodules as
they are in src/sopcorr/: none missing, none that does not exist.
"""
from __future__ import annotations

import itertools
import re
import subprocess
import sys
from pathlib import Path

import pytest

from integration.helpers import REPO, TINY, results, run_snakemake

DOCS = [REPO / "README.md", *sorted((REPO / "docs").glob("*.md"))]
REPO_PREFIXES = ("src/", "workflow/", "config/", "docs/", "benchmarks/", "tests/", "profiles/", "envs/")
REPO_FILES = ("Makefile", "Snakefile", "README.md", "pyproject.toml")
#: first folders of results/<run>/ (paths written relative to the run folder)
RUN_DIRS = ("data/", "dataset/", "eval/", "features/", "figures/", "flow/", "logs/", "manifold/",
            "siamese/", "tables/", "report/", "viewer/")
#: runs of the tiny config: the tiny run itself and the default config it shrinks
THIS_RUN = ("<run>", "default", "tiny")
#: named as absent on purpose ("there is deliberately no profiles/default/")
ABSENT = {"profiles/default/"}
#: exist only while a job runs (resume state, atomic-write temporaries)
TRANSIENT = (".state.pt", ".tmp/", ".tmp")


# -- extraction ---------------------------------------------------------------------------------
def code_chunks(text: str):
    """Fenced code blocks, inline code spans and Markdown link targets of ``text``."""
    for m in re.finditer(r"```[^\n]*\n(.*?)```", text, re.S):
        yield m.group(1)
    rest = re.sub(r"```.*?```", "", text, flags=re.S)
    for m in re.finditer(r"``(.+?)``|`([^`]+)`", rest, re.S):  # spans may wrap a line
        yield m.group(1) or m.group(2)
    for m in re.finditer(r"\]\(([^)\s#]+)", rest):
        yield m.group(1)


def path_tokens(chunk: str):
    """Path-like words of a code chunk: repository paths, results/ paths and run-relative
    paths, without surrounding punctuation and option prefixes (``--x=path``)."""
    chunk = re.sub(r"\{[^{}]*\}", lambda m: m.group(0).replace(" ", ""), chunk)  # {a, b}
    for word in re.split(r"[\s(]+", chunk):
        if "..." in word or "…" in word:
            continue  # an elided path
        word = word.split("=", 1)[-1] if word.startswith("-") else word
        word = word.strip("\"'`*,;:()")
        if word.endswith("]") and "[" not in word:
            word = word.rstrip("]")
        word = re.sub(r"[.,;:)\]]+$", "", word) if not word.endswith(("/", "]")) else word.rstrip(",;:)")
        word = word[2:] if word.startswith("./") else word
        if not re.search(r"[A-Za-z0-9]", word) or "://" in word:
            continue
        if word.startswith(("results/", "<run>/", "../", "/")) or word.startswith(REPO_PREFIXES) \
                or word in REPO_FILES or word.startswith(RUN_DIRS):
            yield word


def named_paths(text: str) -> list[str]:
    out = []
    for chunk in code_chunks(text):
        for tok in path_tokens(chunk):
            if tok not in out:
                out.append(tok)
    return out


def help_texts() -> dict[str, str]:
    """``sopcorr --help`` and each subcommand's, and every benchmark's ``--help``."""
    def run(argv):
        return subprocess.run(argv, capture_output=True, text=True, timeout=120, cwd=REPO).stdout

    texts = {"sopcorr --help": run([sys.executable, "-m", "sopcorr.cli", "--help"])}
    subs = re.search(r"\{([\w,-]+)\}", texts["sopcorr --help"])
    for sub in (subs.group(1).split(",") if subs else []):
        texts[f"sopcorr {sub} --help"] = run([sys.executable, "-m", "sopcorr.cli", sub, "--help"])
    for b in sorted((REPO / "benchmarks").glob("*.py")):
        if not b.name.startswith("_"):
            texts[f"benchmarks/{b.name} --help"] = run([sys.executable, str(b), "--help"])
    return texts


def help_paths(text: str) -> list[str]:
    out = []
    for tok in path_tokens(text.replace("``", " ")):
        if tok not in out:
            out.append(tok)
    return out


# -- resolution ---------------------------------------------------------------------------------
def expand(path: str) -> list[str]:
    """Alternatives of a written path: ``{a,b}`` braces, ``[optional/]`` parts and
    ``x.csv|md|tex`` extension lists."""
    m = re.search(r"\{([^{}]*,[^{}]*)\}", path)
    if m:
        return [q for alt in m.group(1).split(",") for q in expand(path[:m.start()] + alt + path[m.end():])]
    m = re.search(r"\[([^\[\]]*)\]", path)
    if m:
        return expand(path[:m.start()] + path[m.end():]) + expand(path[:m.start()] + m.group(1) + path[m.end():])
    if "|" in path:
        head, *alts = path.split("|")
        stem = head.rsplit(".", 1)[0] if "." in head.rsplit("/", 1)[-1] else None
        if stem and all("/" not in a for a in alts):
            return [head] + [f"{stem}.{a}" for a in alts]
        return [p for part in path.split("|") for p in expand(part)]
    return [path]


def classify(path: str) -> tuple[str, str]:
    """('repo' | 'run' | 'skip', path relative to its root). Run paths are relative to
    results/<run>/ with ``<run>`` resolved, skipped ones carry the reason."""
    if path in ABSENT:
        return "absent", path
    if path.startswith(("../", "/", "$")):
        return "skip", "outside the repository"
    if path.startswith("results/"):
        parts = path.split("/", 2)
        if len(parts) < 3 or not parts[2]:
            return "run", ""
        if parts[1] in THIS_RUN:
            return "run", parts[2]
        return "skip", f"a run of another config ({parts[1]})"
    if path.startswith("<run>/"):
        return "run", path[len("<run>/"):]
    if path.startswith(REPO_PREFIXES) or path in REPO_FILES:
        if path.startswith("benchmarks/") and not (REPO / path.split("/")[0] / path.split("/")[1]).exists() \
                and "/" in path[len("benchmarks/"):].rstrip("/"):
            return "run", path  # results/<run>/benchmarks/<rule>/...
        return "repo", path
    return "run", path


def concrete(rel: str, categories, variant: str) -> list[tuple[str, bool]]:
    """(path, is_glob) for each category (paths with a category placeholder) with the variant
    and run filled in and any other placeholder turned into ``*``."""
    out = []
    has_cat = re.search(r"<cat(egory)?>|\{cat(egory)?\}", rel) is not None
    for cat in (categories if has_cat else [None]):
        p = re.sub(r"<cat(egory)?>|\{cat(egory)?\}", cat or "", rel)
        p = re.sub(r"<(manifold\.)?variant>|\{variant\}", variant, p)
        p = re.sub(r"<[^<>/]*>|\{[^{}/]*\}|#+", "*", p)
        out.append((p, "*" in p))
    return out


# -- unit tests of the extraction (fast) ----------------------------------------------------------
def test_extraction_and_expansion():
    text = ("Run `snakemake results/<run>/tables/pair_pck.csv` or see [the docs](docs/FLOW.md).\n"
            "```bash\nsnakemake --configfile=config/paper.yaml -- results/default/report.html\n```\n"
            "Stores: `features/<cat>.zarr`, `https://x.org/a/b`, `results/<run>/...`, `tables/x.{csv,md}`.")
    assert named_paths(text) == ["config/paper.yaml", "results/default/report.html",
                                 "results/<run>/tables/pair_pck.csv", "features/<cat>.zarr",
                                 "tables/x.{csv,md}", "docs/FLOW.md"]
    assert expand("tables/x.{csv,md}") == ["tables/x.csv", "tables/x.md"]
    assert expand("tables/*.csv|md|tex") == ["tables/*.csv", "tables/*.md", "tables/*.tex"]
    assert expand("a/[<v>/]b") == ["a/b", "a/<v>/b"]
    assert classify("results/pfwillow/tables/a.csv")[0] == "skip"
    assert classify("results/default/tables/a.csv") == ("run", "tables/a.csv")
    assert classify("benchmarks/pseudo_flow/{variant}/{category}.tsv")[0] == "run"
    assert classify("benchmarks/bench_demo.sh") == ("repo", "benchmarks/bench_demo.sh")
    assert concrete("manifold/<variant>/<cat>/x_<n>.npz", ["bird", "car"], "improved") == [
        ("manifold/improved/bird/x_*.npz", True), ("manifold/improved/car/x_*.npz", True)]


# -- the check against a finished run (slow) ------------------------------------------------------
@pytest.fixture(scope="module")
def finished_run(reference_a):
    """A finished tiny run with its HTML report, as `make demo` leaves the default run."""
    return reference_a


def _exists(root: Path, pattern: str, is_glob: bool) -> bool:
    pattern = pattern.rstrip("/")
    if not pattern:
        return root.is_dir()
    return any(root.glob(pattern)) if is_glob else (root / pattern).exists()


@pytest.mark.slow
def test_every_named_path_exists_after_a_finished_run(finished_run):
    import yaml

    cfg = yaml.safe_load((REPO / "config" / "config.yaml").read_text())
    tiny = yaml.safe_load(TINY.read_text())
    categories = tiny["dataset"]["synthetic"]["categories"]
    variant = (tiny.get("manifold") or {}).get("variant", cfg["manifold"]["variant"])
    run_root = results(finished_run)
    sources = {d.relative_to(REPO).as_posix(): named_paths(d.read_text()) for d in DOCS}
    sources.update({name: help_paths(text) for name, text in help_texts().items()})
    missing, to_plan, skipped = [], {}, []
    for where, paths in sources.items():
        for written in paths:
            if any(written.endswith(t) or t + "/" in written for t in TRANSIENT):
                skipped.append(f"{where}: {written} (exists only while a job runs)")
                continue
            ok = True
            for alt in expand(written):
                kind, rel = classify(alt)
                if kind == "skip":
                    skipped.append(f"{where}: {alt} ({rel})")
                    continue
                if kind == "absent":
                    if (REPO / rel).exists():
                        missing.append(f"{where}: {alt} is documented as absent but exists")
                    continue
                root = REPO if kind == "repo" else run_root
                for p, is_glob in concrete(rel, categories, variant):
                    if _exists(root, p, is_glob):
                        continue
                    if kind == "run" and not is_glob:
                        to_plan.setdefault(f"results/{run_root.name}/{p}", []).append(f"{where}: {written}")
                    else:
                        ok = False
            if not ok:
                missing.append(f"{where}: {written}")
    # files a finished run lacks must at least be files the workflow can make
    if to_plan:
        proc = run_snakemake(finished_run, targets=sorted(to_plan), cores=1, extra=["-n"], check=False)
        if proc.returncode != 0:
            for target, refs in sorted(to_plan.items()):
                one = run_snakemake(finished_run, targets=[target], cores=1, extra=["-n"], check=False)
                if one.returncode != 0:
                    missing += [f"{ref} (not in the finished run, and no rule makes {target})" for ref in refs]
    print(f"\nskipped ({len(skipped)}):\n  " + "\n  ".join(sorted(set(skipped))))
    assert not missing, "named but missing:\n  " + "\n  ".join(missing)


# -- module names (fast) --------------------------------------------------------------------------
MODULE_DOCS = [*DOCS, REPO / "config" / "README.md"]
SRC = REPO / "src" / "sopcorr"


def module_names(text: str) -> list[str]:
    """Every ``sopcorr.a.b`` written in ``text`` (prose or code), in order, once."""
    out = []
    for m in re.findall(r"\bsopcorr(?:\.[A-Za-z_][A-Za-z0-9_]*)+", text):
        if m not in out:
            out.append(m)
    return out


def resolves(name: str) -> bool:
    """``name`` is a module of the project or an attribute (chain) of its longest module prefix."""
    import importlib
    import importlib.util

    parts = name.split(".")
    for k in range(len(parts), 0, -1):
        mod = ".".join(parts[:k])
        try:
            spec = importlib.util.find_spec(mod)
        except (ImportError, ValueError):
            spec = None
        if spec is None:
            continue
        obj = importlib.import_module(mod)
        for attr in parts[k:]:
            if not hasattr(obj, attr):
                return False
            obj = getattr(obj, attr)
        return True
    return False


def test_module_names_of_the_docs_exist():
    assert module_names("see `sopcorr.siamese.paper.train` and sopcorr.io.atomic_path(p).") == [
        "sopcorr.siamese.paper.train", "sopcorr.io.atomic_path"]
    assert resolves("sopcorr.siamese.paper.train.PaperTraining") and resolves("sopcorr.matchers.methods.METHODS")
    assert not resolves("sopcorr.siamese.model") and not resolves("sopcorr.flow.pseudo.no_such_function")
    bad = [f"{d.relative_to(REPO).as_posix()}: {m}" for d in MODULE_DOCS for m in module_names(d.read_text())
           if not resolves(m)]
    assert not bad, "modules named but missing:\n  " + "\n  ".join(bad)


def module_table(text: str) -> dict[str, list[str]]:
    """docs/ARCHITECTURE.md's module table: {module: [its submodules as listed]} (the rows of the
    table under '## Library modules' with a ``sopcorr.x`` first cell; '—': none)."""
    section = text.split("## Library modules", 1)[1].split("\n## ", 1)[0]
    out = {}
    for line in section.splitlines():
        cells = [c.strip() for c in line.strip().strip("|").split("|")]
        if len(cells) >= 3 and re.fullmatch(r"`sopcorr(\.\w+)*`", cells[0]):
            out[cells[0].strip("`")] = re.findall(r"`(\w+)`", cells[1])
    return out


def _submodules(package: str) -> set[str]:
    folder = SRC.joinpath(*package.split(".")[1:])
    return {p.stem for p in folder.glob("*.py") if p.stem != "__init__"} | \
        {p.name for p in folder.iterdir() if (p / "__init__.py").is_file()}


def test_the_module_table_lists_every_module_as_it_is():
    table = module_table((REPO / "docs" / "ARCHITECTURE.md").read_text())
    assert module_table("## Library modules\n| `sopcorr.x` | `a`, `b` | owns `c` |\n## Next\n") == {"sopcorr.x": ["a", "b"]}
    problems = []
    for module, subs in table.items():
        folder = SRC.joinpath(*module.split(".")[1:])
        if folder.is_dir():
            have = _submodules(module)
            problems += [f"{module}: lists `{s}`, which does not exist" for s in subs if s not in have]
            problems += [f"{module}: does not list `{s}`" for s in sorted(have - set(subs))]
        elif not folder.with_suffix(".py").is_file():
            problems.append(f"{module}: no such module")
        elif subs:
            problems.append(f"{module}: a module, but the table lists submodules {subs}")
    # every module of the project has its row: top-level modules and every (sub)package
    listed = set(table)
    for p in sorted(SRC.rglob("*.py")):
        rel = p.relative_to(SRC.parent).with_suffix("")
        name = ".".join(rel.parts[:-1]) if p.name == "__init__.py" else ".".join(rel.parts)
        parent = name.rsplit(".", 1)[0]
        if p.name == "__init__.py" or parent == "sopcorr":
            if name not in listed and name != "sopcorr":
                problems.append(f"{name}: no row in the module table")
    assert not problems, "docs/ARCHITECTURE.md's module table:\n  " + "\n  ".join(problems)
