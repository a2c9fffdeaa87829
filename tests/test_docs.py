"""The documentation: the generated reference pages match the code, the site builds with no broken link or anchor,
and the README's links and commands agree with the pages they point to."""

from __future__ import annotations

import importlib.util
import re
import subprocess
import sys
from pathlib import Path
from types import ModuleType

import pytest

REPO = Path(__file__).resolve().parents[1]
DOCS = REPO / "docs"


def load_generator() -> ModuleType:
    spec = importlib.util.spec_from_file_location("gen_reference", DOCS / "gen_reference.py")
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    dont_write, sys.dont_write_bytecode = sys.dont_write_bytecode, True  # no __pycache__ among the pages
    try:
        spec.loader.exec_module(module)
    finally:
        sys.dont_write_bytecode = dont_write
    return module


def test_reference_pages_are_current():
    gen = load_generator()
    for key, text in gen.render().items():
        path = gen.PAGES[key]
        committed = path.read_text(encoding="utf-8") if path.exists() else ""
        assert committed == text, f"{path.relative_to(REPO)} is stale: run python docs/gen_reference.py"


def test_reference_covers_every_command_and_key():
    from rewardlab.cli import COMMANDS
    from rewardlab.config.schema import ServeConfig, TrainConfig

    gen = load_generator()
    cli, config = gen.render_cli(), gen.render_config()
    assert all(f"\n## rewardlab {name}\n" in cli for name in COMMANDS)
    assert "- `--max-batch-tokens MAX_BATCH_TOKENS`: Most padded tokens" in cli
    for cls in (TrainConfig, ServeConfig):
        section = config.split(f"\n## {cls.__name__}\n", 1)[1].split("\n## ", 1)[0]
        keys = [row.split(" | ")[0].strip("| `") for row in section.splitlines() if row.startswith("| `")]
        assert keys[: len(cls.model_fields)] == list(cls.model_fields)  # every key, in declaration order
    assert "| `port` | int; ≥ 0, ≤ 65535 | `8000` | TCP port (0: any free port, printed at start). |" in config


def test_reference_tables_keep_their_columns():
    """A pipe in a description (`|cov(…)|`, `<|im_end|>`) must not split a cell, in MkDocs or on GitHub: every row of
    a generated table has its header's number of cells."""
    gen = load_generator()
    assert gen.table_cell("a|b `<|x|>` `c`") == "a\\|b <code>&lt;&#124;x&#124;&gt;</code> `c`"
    for name in ("config.md", "cli.md"):
        text = (DOCS / "reference" / name).read_text(encoding="utf-8")
        for table in re.findall(r"(?:^\|.*\n)+", text, re.M):
            widths = {len(re.split(r"(?<!\\)\|", row)) for row in table.splitlines()}
            assert len(widths) == 1, table


def test_docs_site_builds_without_broken_links(tmp_path):
    pytest.importorskip("mkdocs", reason="mkdocs is not installed: pip install -e '.[dev]'")
    proc = subprocess.run(
        [sys.executable, "-m", "mkdocs", "build", "--strict", "-f", str(REPO / "mkdocs.yml"), "-d", str(tmp_path)],
        capture_output=True,
        text=True,
        cwd=REPO,
    )
    assert proc.returncode == 0, proc.stdout + proc.stderr
    for page in ("index.html", "reference/cli/index.html", "reference/config/index.html", "label_pair.png"):
        assert (tmp_path / page).is_file(), page
    assert not (tmp_path / "gen_reference.py").exists()


def slug(heading: str) -> str:
    """A heading's anchor, as MkDocs and GitHub write it."""
    return re.sub(r"\s+", "-", re.sub(r"[^\w\s-]", "", heading.strip().lower()))


def test_readme_links_resolve():
    readme = (REPO / "README.md").read_text(encoding="utf-8")
    links = re.findall(r"\]\(([^)\s]+)\)", readme)
    local = [link for link in links if not re.match(r"[a-z]+://", link)]
    assert any(link.startswith("docs/reference/cli.md") for link in local)
    for link in local:
        path, _, anchor = link.partition("#")
        target = REPO / path if path else REPO / "README.md"
        assert target.exists(), link
        if anchor:
            headings = re.findall(r"^#+ (.+)$", target.read_text(encoding="utf-8"), re.M)
            assert anchor in {slug(h) for h in headings}, link


def test_readme_train_commands_are_in_the_training_guide():
    readme = (REPO / "README.md").read_text(encoding="utf-8")
    section = readme.split("\n## Train your own\n", 1)[1].split("\n## ", 1)[0]
    blocks = re.findall(r"```bash\n(.*?)\n```", section, re.S)
    guide = (DOCS / "training.md").read_text(encoding="utf-8")
    assert blocks and all(block in guide for block in blocks)
