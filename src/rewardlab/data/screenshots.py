"""Synthetic web-page screenshots with a known layout: the offline vision demo's dataset.

A :class:`PageSpec` lists a page's visible attributes; :func:`render_page` draws it with shapes only (no
fonts): a header bar in the header colour with a fake title and nav items, paragraphs of grey text bars,
coloured buttons, a form of outlined input boxes, a table grid and a picture (sky, sun, mountains). Each
attribute changes a large, high-contrast area, so it stays visible after resizing to 64×64 (tests check it).

A pair's ``chosen`` is :func:`describe` of the page and ``rejected`` describes the page with exactly one
attribute changed (:func:`perturb`); ``subset`` names that attribute, for per-attribute accuracy.

Attributes (also in :data:`ATTRIBUTES`):

- ``header_colour``: one of :data:`COLOURS` (red, orange, green, blue, purple, black).
- ``columns``: 1 (blocks stacked full width) or 2 (blocks split into two columns).
- ``dark_mode``: dark grey background and light text bars, or white background and grey text bars.
- ``button_count``: 0 to 3 buttons in a row; ``button_colour``: one of :data:`COLOURS` (not visible, and
  never perturbed, without buttons).
- ``has_form``, ``has_table``, ``has_image``: a form (2–3 labelled input boxes), a table, a picture.

``variant`` seeds what descriptions do not mention (line lengths, title width, number of form inputs, table
columns), so that a model must look at the attributes rather than memorise pixels. Everything is seeded:
the same seed gives byte-identical PNG files.

Pillow (``pip install 'rewardlab[vision]'``) is imported only by the functions that draw.
"""

from __future__ import annotations

import json
import os
import random
from collections.abc import Mapping
from dataclasses import dataclass, fields, replace
from pathlib import Path
from typing import TYPE_CHECKING, Any

from rewardlab.data.records import PreferencePair

if TYPE_CHECKING:
    from PIL import Image, ImageDraw

RGB = tuple[int, int, int]
Box = tuple[int, int, int, int]  # x0, y0, x1, y1; x1 and y1 exclusive

COLOURS: dict[str, RGB] = {
    "red": (215, 38, 38),
    "orange": (245, 135, 0),
    "green": (30, 150, 55),
    "blue": (30, 90, 225),
    "purple": (135, 45, 190),
    "black": (12, 12, 12),
}
MAX_BUTTONS = 3
ATTRIBUTES = (
    "header_colour",
    "columns",
    "dark_mode",
    "button_count",
    "button_colour",
    "has_form",
    "has_table",
    "has_image",
)
PROMPT = "Describe this web page."
_NUMBERS = ("no", "one", "two", "three")


@dataclass(frozen=True)
class PageSpec:
    """The visible attributes of one synthetic page (module docstring); ``variant`` seeds undescribed details."""

    header_colour: str
    button_count: int
    button_colour: str
    has_form: bool
    has_table: bool
    has_image: bool
    columns: int
    dark_mode: bool
    variant: int = 0

    def __post_init__(self) -> None:
        problems = []
        for name in ("header_colour", "button_colour"):
            if getattr(self, name) not in COLOURS:
                problems.append(f"{name}={getattr(self, name)!r} is not one of {sorted(COLOURS)}")
        if self.button_count not in range(MAX_BUTTONS + 1):
            problems.append(f"button_count={self.button_count!r} is not in 0..{MAX_BUTTONS}")
        if self.columns not in (1, 2):
            problems.append(f"columns={self.columns!r} is not 1 or 2")
        if problems:
            raise ValueError("invalid PageSpec: " + "; ".join(problems))


def random_page(rng: random.Random) -> PageSpec:
    """A page with every attribute drawn uniformly (each boolean is a coin flip)."""
    colours = list(COLOURS)
    return PageSpec(
        header_colour=rng.choice(colours),
        button_count=rng.randint(0, MAX_BUTTONS),
        button_colour=rng.choice(colours),
        has_form=rng.random() < 0.5,
        has_table=rng.random() < 0.5,
        has_image=rng.random() < 0.5,
        columns=rng.choice((1, 2)),
        dark_mode=rng.random() < 0.5,
        variant=rng.randrange(2**31),
    )


def describe(spec: PageSpec) -> str:
    """One deterministic sentence pair naming every attribute, e.g. ``"A web page in light mode with a blue
    header and two columns. It has two orange buttons and a form, but no table and no image."``."""
    mode = "dark" if spec.dark_mode else "light"
    layout = "a single column" if spec.columns == 1 else "two columns"
    plural = "s" if spec.button_count > 1 else ""
    buttons = f"{_NUMBERS[spec.button_count]} {spec.button_colour} button{plural}"
    parts = [  # (shown, phrase if shown, phrase if not)
        (spec.button_count > 0, buttons, "no buttons"),
        (spec.has_form, "a form", "no form"),
        (spec.has_table, "a table", "no table"),
        (spec.has_image, "an image", "no image"),
    ]
    present = [yes for shown, yes, _ in parts if shown]
    absent = [no for shown, _, no in parts if not shown]
    content = f"{_join(present)}, but {_join(absent)}" if present and absent else _join(present or absent)
    header = f"{'an' if spec.header_colour[0] in 'aeiou' else 'a'} {spec.header_colour} header"
    return f"A web page in {mode} mode with {header} and {layout}. It has {content}."


def _join(items: list[str]) -> str:
    return items[0] if len(items) == 1 else ", ".join(items[:-1]) + " and " + items[-1]


def perturb(spec: PageSpec, rng: random.Random, weights: Mapping[str, float] | None = None) -> tuple[PageSpec, str]:
    """A copy of ``spec`` with exactly one attribute set to another valid value, and that attribute's name.

    The attribute is drawn uniformly from :data:`ATTRIBUTES` — or in proportion to ``weights`` (attribute → weight,
    1.0 for those not named) — except ``button_colour`` on a page without buttons (it would not change the
    picture or the description). ``variant`` never changes.
    """
    names = [a for a in ATTRIBUTES if a != "button_colour" or spec.button_count > 0]
    # Uniform draws keep rng.choice, so pages made without weights stay byte-identical to earlier versions.
    name = rng.choice(names) if weights is None else rng.choices(names, [weights.get(a, 1.0) for a in names])[0]
    value = getattr(spec, name)
    if name in ("header_colour", "button_colour"):
        new: Any = rng.choice([c for c in COLOURS if c != value])
    elif name == "button_count":
        new = rng.choice([n for n in range(MAX_BUTTONS + 1) if n != value])
    elif name == "columns":
        new = 3 - value
    else:
        new = not value
    return replace(spec, **{name: new}), name


def changed_fields(a: PageSpec, b: PageSpec) -> list[str]:
    """Names of the fields whose values differ between two specs."""
    return [f.name for f in fields(PageSpec) if getattr(a, f.name) != getattr(b, f.name)]


# ---------------------------------------------------------------------------------------------- HTML

_LOREM = (
    "Fresh leaves are picked at dawn and dried in the shade",
    "Our shop ships every week",
    "Read the guide before you order",
    "Ask us anything",
)


def render_html(spec: PageSpec, title: str = "Example page") -> str:
    """``spec`` as a real HTML page (header, paragraphs, buttons, form, table, picture in one or two columns, the
    blocks in :func:`render_page`'s order): what ``rewardlab capture --describe`` is checked against."""
    theme = _DARK if spec.dark_mode else _LIGHT

    def css(rgb: RGB) -> str:
        return "rgb({}, {}, {})".format(*rgb)

    blocks = []
    layout = _layout(spec, (256, 192), round(192 * 0.15))
    rng = random.Random(f"{spec.variant}:html")
    for kind, _box in layout:
        if kind == "text":
            blocks.append(
                f"<section><h2>{rng.choice(_LOREM)}</h2><p>{'. '.join(rng.sample(_LOREM, 2))}.</p></section>"
            )
        elif kind == "image":
            svg = ("<svg xmlns='http://www.w3.org/2000/svg' width='240' height='120'><rect width='240' height='120' "
                   "fill='rgb(140,195,240)'/><circle cx='190' cy='30' r='18' fill='rgb(250,200,35)'/>"
                   "<polygon points='0,120 80,40 160,120' fill='rgb(45,130,60)'/></svg>")  # fmt: skip
            blocks.append(f'<section><img alt="landscape" width="240" height="120" src="data:image/svg+xml,{svg}">'
                          "</section>")  # fmt: skip
        elif kind == "form":
            inputs = "".join(f'<label>Field {i + 1} <input type="text" name="f{i}"></label><br>'
                             for i in range(2 + spec.variant % 2))  # fmt: skip
            blocks.append(f'<section><form style="background:{css(theme.card)};padding:8px">{inputs}</form></section>')
        elif kind == "table":
            rows = "".join("<tr>" + "".join(f"<td>{r}.{c}</td>" for c in range(3)) + "</tr>" for r in range(3))
            blocks.append(
                f"<section><table border='1'><tr><th>A</th><th>B</th><th>C</th></tr>{rows}</table></section>"
            )
        else:
            buttons = "".join(f'<button type="button" style="background:{css(COLOURS[spec.button_colour])};'
                              f'color:#fff;border:0;padding:8px 16px;margin-right:8px">Action {i + 1}</button>'
                              for i in range(spec.button_count))  # fmt: skip
            blocks.append(f"<section>{buttons}</section>")
    columns = [[] for _ in range(spec.columns)]
    # The same split as the drawing: which column each block went to, from its box's left edge.
    lefts = sorted({box[0] for _, box in layout})
    for (_kind, box), block in zip(layout, blocks):
        columns[lefts.index(box[0])].append(block)
    body = "".join(f'<div class="col">{"".join(col)}</div>' for col in columns)
    return (
        f"<!doctype html><html><head><meta charset='utf-8'><title>{title}</title><style>"
        f"body{{margin:0;font-family:sans-serif;background:{css(theme.background)};color:{css(theme.heading)}}}"
        f"header{{background:{css(COLOURS[spec.header_colour])};color:#eee;padding:16px 24px;font-size:20px}}"
        f"main{{display:grid;grid-template-columns:repeat({spec.columns},1fr);gap:32px;padding:16px 24px}}"
        "table{border-collapse:collapse}td,th{padding:4px 10px}"
        f"</style></head><body><header>{title} <nav style='float:right'>Home · Shop · About</nav></header>"
        f"<main>{body}</main></body></html>"
    )


# ---------------------------------------------------------------------------------------------- drawing


@dataclass(frozen=True)
class _Theme:
    background: RGB
    text: RGB  # body text bars
    heading: RGB  # paragraph heading bars
    card: RGB  # form background
    field: RGB  # input box fill
    line: RGB  # outlines and grid lines
    table_head: RGB


_LIGHT = _Theme((255, 255, 255), (185, 185, 190), (95, 95, 105), (238, 241, 246), (255, 255, 255), (125, 128, 138),
                (205, 210, 220))  # fmt: skip
_DARK = _Theme((48, 51, 62), (125, 129, 142), (205, 208, 216), (66, 70, 84), (30, 32, 40), (150, 154, 168),
               (86, 91, 108))  # fmt: skip
_TITLE = (238, 238, 238)
_NAV = (210, 210, 210)
_BUTTON_LABEL = (245, 245, 245)
_SKY, _SUN, _HILL, _FAR_HILL = (140, 195, 240), (250, 200, 35), (45, 130, 60), (95, 165, 90)
_BUTTON_HEIGHT = 0.13  # of the page height
_WEIGHTS = {"text": 0.7, "image": 2.0, "form": 2.0, "table": 2.0}  # share of the height left after buttons


def _pil() -> tuple[Any, Any]:
    try:
        from PIL import Image, ImageDraw
    except ImportError:
        raise ImportError("drawing screenshots needs Pillow: pip install 'rewardlab[vision]'") from None
    return Image, ImageDraw


def render_page(spec: PageSpec, size: tuple[int, int] = (256, 192)) -> Image.Image:
    """Draw ``spec`` as an RGB image of ``size`` (width, height); the same spec and size give the same pixels.

    Geometry scales with ``size``; below 96×72 the thinnest bars vanish, so that is the smallest size allowed.
    """
    width, height = size
    if width < 96 or height < 72:
        raise ValueError(f"size must be at least (96, 72), got {size}")
    image_mod, draw_mod = _pil()
    theme = _DARK if spec.dark_mode else _LIGHT
    image = image_mod.new("RGB", (width, height), theme.background)
    draw = draw_mod.Draw(image)
    header_height = _draw_header(draw, spec, size)
    drawers = {"text": _draw_text, "image": _draw_picture, "form": _draw_form, "table": _draw_table}
    seen: list[str] = []
    for kind, box in _layout(spec, size, header_height):
        # One generator per block, so that adding a block does not change the details of the others.
        rng = random.Random(f"{spec.variant}:{kind}:{seen.count(kind)}")
        seen.append(kind)
        if kind == "buttons":
            _draw_buttons(draw, box, spec, height)
        else:
            drawers[kind](draw, box, theme, rng, height)
    return image


def _draw_header(draw: ImageDraw.ImageDraw, spec: PageSpec, size: tuple[int, int]) -> int:
    """Header bar with a logo, a two-word title and three nav items; returns its height."""
    width, height = size
    rng = random.Random(f"{spec.variant}:header")
    bar_h = round(height * 0.15)
    draw.rectangle((0, 0, width - 1, bar_h - 1), fill=COLOURS[spec.header_colour])
    margin = round(width * 0.035)
    logo = round(bar_h * 0.5)
    top = (bar_h - logo) // 2
    draw.rounded_rectangle((margin, top, margin + logo - 1, top + logo - 1), radius=logo // 4, fill=_TITLE)
    thick = max(2, round(bar_h * 0.26))
    y = (bar_h - thick) // 2
    x = margin + logo + margin // 2
    for share in (rng.uniform(0.09, 0.14), rng.uniform(0.06, 0.1)):
        x1 = x + round(width * share)
        draw.rectangle((x, y, x1 - 1, y + thick - 1), fill=_TITLE)
        x = x1 + max(2, round(width * 0.015))
    nav_w, nav_gap, nav_t = round(width * 0.065), round(width * 0.03), max(2, round(bar_h * 0.16))
    y = (bar_h - nav_t) // 2
    for i in range(3):
        x1 = width - margin - i * (nav_w + nav_gap)
        draw.rectangle((x1 - nav_w, y, x1 - 1, y + nav_t - 1), fill=_NAV)
    return bar_h


def _layout(spec: PageSpec, size: tuple[int, int], header_height: int) -> list[tuple[str, Box]]:
    """Blocks in reading order with their boxes: stacked in one column, or greedily balanced over two.

    A paragraph opens the page and another closes it, except in one column with three or more other blocks,
    where it would squeeze the form and the table too thin to read at 64×64.
    """
    width, height = size
    shown = (spec.has_image, spec.has_form, spec.has_table, spec.button_count > 0)
    kinds = ["text"] + [k for k, on in zip(("image", "form", "table", "buttons"), shown) if on]
    if spec.columns == 2 or len(kinds) < 4:
        kinds.append("text")
    columns: list[list[int]] = [[] for _ in range(spec.columns)]
    loads = [0.0] * spec.columns
    for index, kind in enumerate(kinds):
        col = loads.index(min(loads))
        columns[col].append(index)
        loads[col] += _WEIGHTS.get(kind, 1.0)
    margin, gap = round(width * 0.035), round(height * 0.03)
    gutter = 2 * margin
    col_w = (width - 2 * margin - gutter * (spec.columns - 1)) // spec.columns
    top, bottom = header_height + gap, height - gap
    button_h = round(height * _BUTTON_HEIGHT)
    boxes: dict[int, Box] = {}
    for c, column in enumerate(columns):
        x0 = margin + c * (col_w + gutter)
        flexible = [_WEIGHTS[kinds[i]] for i in column if kinds[i] != "buttons"]
        free = bottom - top - gap * (len(column) - 1) - button_h * (len(column) - len(flexible))
        y = float(top)
        for i in column:
            h = button_h if kinds[i] == "buttons" else free * _WEIGHTS[kinds[i]] / sum(flexible)
            boxes[i] = (x0, round(y), x0 + col_w, round(y + h))
            y += h + gap
    return [(kind, boxes[i]) for i, kind in enumerate(kinds)]


def _draw_text(draw: ImageDraw.ImageDraw, box: Box, theme: _Theme, rng: random.Random, height: int) -> None:
    """A heading bar, then text lines (grey bars) filling the box; the last line is short."""
    x0, y0, x1, y1 = box
    head, thick, pitch = max(3, round(height * 0.034)), max(2, round(height * 0.018)), max(4, round(height * 0.045))
    draw.rectangle((x0, y0, x0 + round((x1 - x0) * rng.uniform(0.3, 0.55)) - 1, y0 + head - 1), fill=theme.heading)
    lines = list(range(y0 + head + pitch - thick, y1 - thick + 1, pitch))
    for i, y in enumerate(lines):
        share = rng.uniform(0.35, 0.7) if i == len(lines) - 1 else rng.uniform(0.82, 1.0)
        draw.rectangle((x0, y, x0 + round((x1 - x0) * share) - 1, y + thick - 1), fill=theme.text)


def _draw_picture(draw: ImageDraw.ImageDraw, box: Box, theme: _Theme, rng: random.Random, height: int) -> None:
    """A photo placeholder: sky, a sun and two green mountains (the same colours in dark mode)."""
    x0, y0, x1, y1 = box
    w, h = x1 - x0, y1 - y0
    draw.rectangle((x0, y0, x1 - 1, y1 - 1), fill=_SKY)
    r = max(2, round(min(w, h) * 0.17))
    cx, cy = x1 - round(w * rng.uniform(0.15, 0.3)), y0 + round(h * 0.3)
    draw.ellipse((cx - r, cy - r, cx + r, cy + r), fill=_SUN)
    peak = rng.uniform(0.3, 0.45)
    draw.polygon([(x0 + w * 0.35, y1 - 1), (x0 + w * 0.72, y0 + h * 0.45), (x1 - 1, y0 + h * 0.7), (x1 - 1, y1 - 1)],
                 fill=_FAR_HILL)  # fmt: skip
    draw.polygon([(x0, y1 - 1), (x0, y0 + h * 0.6), (x0 + w * peak, y0 + h * 0.25), (x0 + w * 0.75, y1 - 1)],
                 fill=_HILL)  # fmt: skip


def _draw_form(draw: ImageDraw.ImageDraw, box: Box, theme: _Theme, rng: random.Random, height: int) -> None:
    """A card with 2–3 fields, each a label bar over an outlined input box; fields side by side in a wide box."""
    x0, y0, x1, y1 = box
    draw.rounded_rectangle((x0, y0, x1 - 1, y1 - 1), radius=max(2, height // 48), fill=theme.card)
    pad, label, outline = max(3, round(height * 0.025)), max(2, round(height * 0.02)), max(1, round(height / 110))
    n = rng.choice((2, 3))
    ix0, iy0, ix1, iy1 = x0 + pad, y0 + pad, x1 - pad, y1 - pad
    across = (ix1 - ix0) > 3 * (iy1 - iy0)
    slots = n if across else 1
    slot_w = (ix1 - ix0 - pad * (slots - 1)) / slots
    slot_h = (iy1 - iy0 - pad * (n // slots - 1)) / (n // slots)
    for i in range(n):
        sx = ix0 + (i % slots) * (slot_w + pad)
        sy = iy0 + (i // slots) * (slot_h + pad)
        draw.rectangle((sx, sy, sx + slot_w * rng.uniform(0.25, 0.45), sy + label - 1), fill=theme.heading)
        field_top = sy + label + max(1, label // 2)
        draw.rectangle((sx, field_top, sx + slot_w - 1, sy + slot_h - 1), fill=theme.field, outline=theme.line,
                       width=outline)  # fmt: skip


def _draw_table(draw: ImageDraw.ImageDraw, box: Box, theme: _Theme, rng: random.Random, height: int) -> None:
    """A grid with a shaded header row, ruled cells and a short text bar in each body cell."""
    x0, y0, x1, y1 = box
    rows = max(2, min(5, round((y1 - y0) / (height * 0.075))))
    cols = rng.choice((3, 4))
    line, thick = max(1, round(height / 100)), max(2, round(height * 0.015))
    row_h, col_w = (y1 - y0) / rows, (x1 - x0) / cols
    draw.rectangle((x0, y0, x1 - 1, round(y0 + row_h)), fill=theme.table_head)
    for r in range(1, rows):
        for c in range(cols):
            cx, cy = x0 + c * col_w, y0 + r * row_h
            bar_y = round(cy + (row_h - thick) / 2)
            bar_x1 = round(cx + col_w * rng.uniform(0.35, 0.7))
            draw.rectangle((round(cx + line + 2), bar_y, bar_x1, bar_y + thick - 1), fill=theme.text)
    for r in range(1, rows):
        y = round(y0 + r * row_h)
        draw.line((x0, y, x1 - 1, y), fill=theme.line, width=line)
    for c in range(1, cols):
        x = round(x0 + c * col_w)
        draw.line((x, y0, x, y1 - 1), fill=theme.line, width=line)
    draw.rectangle((x0, y0, x1 - 1, y1 - 1), outline=theme.line, width=line)


def _draw_buttons(draw: ImageDraw.ImageDraw, box: Box, spec: PageSpec, height: int) -> None:
    """``button_count`` rounded buttons with a light label bar; their width does not depend on the count."""
    x0, y0, x1, y1 = box
    gap = max(3, round((x1 - x0) * 0.04))
    width = min(round(height * 0.3), (x1 - x0 - gap * (MAX_BUTTONS - 1)) // MAX_BUTTONS)
    thick = max(2, round((y1 - y0) * 0.2))
    for i in range(spec.button_count):
        bx = x0 + i * (width + gap)
        draw.rounded_rectangle((bx, y0, bx + width - 1, y1 - 1), radius=(y1 - y0) // 3,
                               fill=COLOURS[spec.button_colour])  # fmt: skip
        ly = y0 + (y1 - y0 - thick) // 2
        draw.rectangle((bx + width // 4, ly, bx + width - width // 4 - 1, ly + thick - 1), fill=_BUTTON_LABEL)


# ---------------------------------------------------------------------------------------------- data sets


def make_screenshot_pairs(
    n: int,
    seed: int,
    out_dir: str | Path,
    size: tuple[int, int] = (256, 192),
    attribute_weights: Mapping[str, float] | None = None,
) -> list[PreferencePair]:
    """Render ``n`` random pages into ``out_dir`` (``page_00000.png``, ...) and return one pair per page.

    ``chosen`` describes the page, ``rejected`` describes it with one attribute changed (named in ``subset``);
    ``images`` is the PNG's path as ``str(Path(out_dir) / name)``. Seeded: the same arguments give the same
    pairs and byte-identical files. ``attribute_weights`` makes some changed attributes more frequent (see
    :func:`perturb`), e.g. to train more on the hard ones; unknown names raise ``ValueError``.
    """
    unknown = sorted(set(attribute_weights or ()) - set(ATTRIBUTES))
    if unknown:
        raise ValueError(f"attribute_weights: unknown attributes {unknown}; known: {list(ATTRIBUTES)}")
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    rng = random.Random(seed)
    pairs = []
    for i in range(n):
        spec = random_page(rng)
        wrong, attribute = perturb(spec, rng, attribute_weights)
        path = out / f"page_{i:05d}.png"
        render_page(spec, size).save(path, format="PNG")
        pairs.append(
            PreferencePair(
                prompt=PROMPT,
                chosen=describe(spec),
                rejected=describe(wrong),
                images=(str(path),),
                id=f"screenshot-{seed}-{i}",
                subset=attribute,
            )
        )
    return pairs


def write_jsonl(pairs: list[PreferencePair], path: str | Path, *, relative: bool = True) -> Path:
    """Write pairs as JSONL rows ``{"id", "prompt", "chosen", "rejected", "images": [path, ...], "subset"}``.

    ``images`` is the list-of-paths column that TRL and LLaMA-Factory read. With ``relative`` (the default) image
    paths are written relative to the JSONL file's directory, so the folder can be moved as a whole; readers
    keep paths as given, so whoever opens the images resolves them against that directory (or pass
    ``relative=False`` to write absolute paths). The file is written to a temporary name and renamed.
    """
    from rewardlab.data.files import atomic_write_text

    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    base = path.parent.resolve()
    lines = []
    for pair in pairs:
        images = [str(image) for image in pair.images]
        if relative:
            images = [Path(os.path.relpath(Path(image).resolve(), base)).as_posix() for image in images]
        else:
            images = [str(Path(image).resolve()) for image in images]
        row = {"id": pair.id, "prompt": pair.prompt, "chosen": pair.chosen, "rejected": pair.rejected}
        row |= {"images": images, "subset": pair.subset}
        lines.append(json.dumps(row, ensure_ascii=False))
    return atomic_write_text(path, "".join(line + "\n" for line in lines))
