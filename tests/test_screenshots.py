"""Synthetic web-page screenshots: seeded, one attribute per perturbation, every attribute visible at 64×64."""

from __future__ import annotations

import json
import random
from dataclasses import replace
from pathlib import Path

import pytest

from rewardlab.config.schema import DataSource
from rewardlab.data.readers import read_records
from rewardlab.data.records import PreferencePair
from rewardlab.data.screenshots import (
    ATTRIBUTES,
    COLOURS,
    MAX_BUTTONS,
    PROMPT,
    PageSpec,
    changed_fields,
    describe,
    make_screenshot_pairs,
    perturb,
    random_page,
    render_page,
    write_jsonl,
)

Image = pytest.importorskip("PIL.Image")
ImageChops = pytest.importorskip("PIL.ImageChops")

BASE = PageSpec("blue", 2, "orange", True, False, True, 1, False, variant=3)


def changed_share(a: PageSpec, b: PageSpec, size: tuple[int, int] | None = None, threshold: int = 24) -> float:
    """Share of pixels where some channel differs by more than ``threshold``, optionally after resizing."""
    ia, ib = render_page(a), render_page(b)
    if size is not None:
        ia, ib = ia.resize(size, Image.BILINEAR), ib.resize(size, Image.BILINEAR)
    r, g, b = ImageChops.difference(ia, ib).split()
    largest = ImageChops.lighter(ImageChops.lighter(r, g), b)  # per pixel, the largest channel difference
    changed = sum(largest.point(lambda v: 255 if v > threshold else 0).histogram()[255:])
    return changed / (ia.width * ia.height)


def alternatives(spec: PageSpec, name: str) -> list[PageSpec]:
    """Every spec that differs from ``spec`` in ``name`` only."""
    values = {
        "header_colour": list(COLOURS),
        "button_colour": list(COLOURS),
        "button_count": list(range(MAX_BUTTONS + 1)),
        "columns": [1, 2],
    }.get(name, [False, True])
    return [replace(spec, **{name: v}) for v in values if v != getattr(spec, name)]


def test_same_seed_gives_identical_files_and_other_seeds_differ(tmp_path):
    a = make_screenshot_pairs(4, seed=7, out_dir=tmp_path / "a", size=(128, 96))
    b = make_screenshot_pairs(4, seed=7, out_dir=tmp_path / "b", size=(128, 96))
    c = make_screenshot_pairs(4, seed=8, out_dir=tmp_path / "c", size=(128, 96))
    assert [(p.chosen, p.rejected, p.subset, p.id) for p in a] == [(p.chosen, p.rejected, p.subset, p.id) for p in b]
    for pa, pb in zip(a, b):
        assert Path(pa.images[0]).read_bytes() == Path(pb.images[0]).read_bytes()
    assert [p.chosen for p in a] != [p.chosen for p in c]
    assert Path(a[0].images[0]).read_bytes() != Path(c[0].images[0]).read_bytes()
    assert render_page(BASE).tobytes() == render_page(BASE).tobytes()


def test_describe_wording():
    assert describe(BASE) == (
        "A web page in light mode with a blue header and a single column. "
        "It has two orange buttons, a form and an image, but no table."
    )
    empty = PageSpec("orange", 0, "red", False, False, False, 2, True)
    assert describe(empty) == (
        "A web page in dark mode with an orange header and two columns. "
        "It has no buttons, no form, no table and no image."
    )
    full = PageSpec("black", 1, "green", True, True, True, 1, False)
    assert describe(full).endswith("It has one green button, a form, a table and an image.")


def test_perturb_changes_exactly_one_attribute_and_the_description():
    rng = random.Random(0)
    seen = set()
    for _ in range(300):
        spec = random_page(rng)
        wrong, name = perturb(spec, rng)
        assert changed_fields(spec, wrong) == [name]
        assert name in ATTRIBUTES
        assert describe(wrong) != describe(spec)
        seen.add(name)
    assert seen == set(ATTRIBUTES)


def test_button_colour_is_not_perturbed_without_buttons():
    spec = replace(BASE, button_count=0)
    rng = random.Random(1)
    assert all(perturb(spec, rng)[1] != "button_colour" for _ in range(200))


def test_invalid_spec_lists_every_problem():
    with pytest.raises(ValueError, match="header_colour='pink'.*button_count=4.*columns=3"):
        PageSpec("pink", 4, "red", False, False, False, 3, False)


@pytest.mark.parametrize("name", ATTRIBUTES)
def test_each_attribute_is_visible_also_at_64x64(name):
    rng = random.Random(11)
    bases = [BASE, replace(BASE, dark_mode=True, columns=2)] + [random_page(rng) for _ in range(3)]
    for base in bases:
        if name == "button_colour" and base.button_count == 0:
            base = replace(base, button_count=1)
        for other in alternatives(base, name):
            assert changed_share(base, other) > 0.01, (name, base, other)
            assert changed_share(base, other, size=(64, 64)) > 0.01, (name, base, other)


def test_render_size_and_determinism_per_variant():
    image = render_page(BASE, size=(160, 120))
    assert image.size == (160, 120) and image.mode == "RGB"
    assert render_page(BASE).tobytes() != render_page(replace(BASE, variant=4)).tobytes()
    with pytest.raises(ValueError, match="at least"):
        render_page(BASE, size=(32, 32))


def test_pairs_point_at_files_and_jsonl_round_trips_through_the_reader(tmp_path):
    pairs = make_screenshot_pairs(3, seed=0, out_dir=tmp_path / "pages", size=(128, 96))
    assert [Path(p.images[0]).name for p in pairs] == ["page_00000.png", "page_00001.png", "page_00002.png"]
    for pair in pairs:
        assert isinstance(pair, PreferencePair) and pair.prompt == PROMPT
        assert Path(pair.images[0]).is_file() and pair.subset in ATTRIBUTES
        assert Image.open(pair.images[0]).size == (128, 96)

    path = write_jsonl(pairs, tmp_path / "pairs.jsonl")
    rows = [json.loads(line) for line in path.read_text().splitlines()]
    assert list(rows[0]) == ["id", "prompt", "chosen", "rejected", "images", "subset"]
    assert rows[0]["images"] == ["pages/page_00000.png"]
    records, report = read_records(DataSource(path=str(path)))
    assert report.counts["images"] == 3
    assert [r.images for r in records] == [
        ("pages/page_00000.png",),
        ("pages/page_00001.png",),
        ("pages/page_00002.png",),
    ]
    assert [(r.chosen, r.rejected, r.subset, r.id) for r in records] == [
        (p.chosen, p.rejected, p.subset, p.id) for p in pairs
    ]
    assert all((path.parent / r.images[0]).is_file() for r in records)

    absolute = write_jsonl(pairs, tmp_path / "abs.jsonl", relative=False)
    first = json.loads(absolute.read_text().splitlines()[0])
    assert first["images"] == [str((tmp_path / "pages" / "page_00000.png").resolve())]
