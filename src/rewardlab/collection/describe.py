"""``capture --describe``: facts read from a page's DOM → a draft correct description and single-fact perturbations
as rejected descriptions, the preference pairs of the screenshot task (``rewardlab.data.screenshots`` vocabulary).

Facts, as the page's browser computes them (after styles and layout):

- ``header_colour``: the background of the first ``header`` / ``[role=banner]`` (else the first element at the top
  that spans the page), snapped to the nearest named colour;
- ``dark_mode``: the page background's luminance below one half;
- ``columns``: the most visible blocks one element lays side by side (grid, flex, float or table cells, and CSS
  multi-column text) in a row at least 35 % of the page's height — a row of cards or a footer's link lists does not
  count; recorded as counted, described as one or two (three or more read as two);
- ``button_count`` (up to three) and ``button_colour``: visible buttons outside forms and navigation;
- ``has_form``, ``has_table``, ``has_image``: a visible form or text input, table, image / SVG / picture.

Headings and the title are recorded too (for people reviewing the draft); the description names the facts only.
"""

from __future__ import annotations

import random
from typing import Any

from rewardlab.data.screenshots import COLOURS, MAX_BUTTONS, PROMPT, PageSpec, describe, perturb

FACTS_JS = """() => {
  const visible = (el) => {
    const r = el.getBoundingClientRect(), s = getComputedStyle(el);
    return r.width > 2 && r.height > 2 && s.visibility !== "hidden" && s.display !== "none";
  };
  const rgba = (c) => (c.match(/[\\d.]+/g) || []).map(Number);
  const background = (el) => {
    for (let e = el; e; e = e.parentElement) {
      const c = rgba(getComputedStyle(e).backgroundColor);
      if (c.length === 3 || (c.length === 4 && c[3] > 0)) return c.slice(0, 3);
    }
    return [255, 255, 255];
  };
  let header = [...document.querySelectorAll("header, [role=banner]")].find(visible);
  if (!header) header = [...document.body.querySelectorAll("*")].find(
      (e) => visible(e) && e.getBoundingClientRect().top < 5 && e.getBoundingClientRect().width > innerWidth * 0.9);
  const buttons = [...document.querySelectorAll(
      "button, input[type=button], input[type=submit], [role=button], a.button, a.btn")]
    .filter((b) => visible(b) && !b.closest("form, nav, header"));
  // Columns: the most blocks laid side by side (any layout: grid, flex, float, table cells) by one parent, in a row
  // that holds a good part of the page's height; a row of cards or a footer's link lists is too short to count.
  const laidOut = [...document.body.querySelectorAll("*")].filter(visible);
  const rects = new Map(laidOut.map((e) => [e, e.getBoundingClientRect()]));
  const pageTop = Math.min(...[...rects.values()].map((r) => r.top + scrollY), 0);
  const pageHeight = Math.max(...[...rects.values()].map((r) => r.bottom + scrollY), 1) - pageTop;
  const hasContent = (e) => e.innerText.trim().length > 0 || e.querySelector("img, svg, picture, canvas, input");
  const sideBySide = (parent) => {
    const kids = [...parent.children].filter((k) => rects.has(k) && rects.get(k).width >= innerWidth * 0.12
                                                    && getComputedStyle(k).display !== "inline" && hasContent(k));
    let best = 1;
    for (const a of kids.slice(0, 200)) {
      const ra = rects.get(a);
      const row = kids.filter((b) => { const rb = rects.get(b);
        return Math.min(ra.bottom, rb.bottom) - Math.max(ra.top, rb.top) > 0.5 * Math.min(ra.height, rb.height); })
        .map((b) => rects.get(b)).sort((x, y) => x.left - y.left);
      let n = 0, right = -Infinity;
      for (const r of row) if (r.left >= right - 2) { n += 1; right = r.right; }
      const height = Math.max(...row.map((r) => r.bottom)) - Math.min(...row.map((r) => r.top));
      if (n >= 2 && height >= 0.35 * pageHeight) best = Math.max(best, n);
    }
    const multi = parseInt(getComputedStyle(parent).columnCount, 10);  // CSS multi-column text
    if (multi >= 2 && rects.get(parent).height >= 0.35 * pageHeight) best = Math.max(best, multi);
    return best;
  };
  rects.set(document.body, document.body.getBoundingClientRect());
  const columns = Math.max(1, ...[document.body, ...laidOut].map(sideBySide));
  const fields = "form, input[type=text], input:not([type]), textarea";
  return {
    title: document.title,
    headings: [...document.querySelectorAll("h1, h2, h3")].filter(visible).map((h) => h.innerText.trim()).slice(0, 10),
    header_rgb: header ? background(header) : null,
    page_rgb: background(document.body),
    buttons: buttons.length,
    button_rgb: buttons.length ? background(buttons[0]) : null,
    forms: [...document.querySelectorAll(fields)].filter(visible).length,
    tables: [...document.querySelectorAll("table")].filter(visible).length,
    images: [...document.querySelectorAll("img, svg, picture")].filter(visible).length,
    columns: columns,
  };
}"""


def nearest_colour(rgb: list[float] | None) -> str:
    if not rgb:
        return "black"
    return min(COLOURS, key=lambda name: sum((a - b) ** 2 for a, b in zip(COLOURS[name], rgb)))


def luminance(rgb: list[float]) -> float:
    r, g, b = (c / 255 for c in rgb[:3])
    return 0.2126 * r + 0.7152 * g + 0.0722 * b


def spec_from_facts(facts: dict[str, Any]) -> PageSpec:
    buttons = min(int(facts.get("buttons") or 0), MAX_BUTTONS)
    return PageSpec(
        header_colour=nearest_colour(facts.get("header_rgb")),
        button_count=buttons,
        button_colour=nearest_colour(facts.get("button_rgb")) if buttons else "black",
        has_form=bool(facts.get("forms")),
        has_table=bool(facts.get("tables")),
        has_image=bool(facts.get("images")),
        columns=2 if (facts.get("columns") or 1) >= 2 else 1,
        dark_mode=luminance(facts.get("page_rgb") or [255, 255, 255]) < 0.5,
    )


def description_pairs(row: dict[str, Any], rejected_per_page: int, seed: int = 0) -> list[dict[str, Any]]:
    """Preference rows for one captured page: its description against up to ``rejected_per_page`` descriptions
    with one fact changed (different facts), with the screenshot as the image and the fact as the subset."""
    spec = spec_from_facts(row["facts"])
    chosen = describe(spec)
    rng = random.Random(f"{seed}:{row['image']}")
    out, used = [], set()
    for _ in range(rejected_per_page * 4):
        if len(out) == rejected_per_page:
            break
        other, attribute = perturb(spec, rng)
        if attribute in used:
            continue
        used.add(attribute)
        out.append({"id": f"{row['image']}:{attribute}", "prompt": PROMPT, "chosen": chosen,
                    "rejected": describe(other), "images": [row["image"]], "subset": attribute,
                    "url": row["url"]})  # fmt: skip
    return out
