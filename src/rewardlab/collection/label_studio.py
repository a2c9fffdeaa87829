"""Label Studio interop: the items ``rewardlab label`` would show, as Label Studio tasks with a labeling config each;
its JSON export reads back as records (:mod:`rewardlab.data.label_studio`).

- Two responses: the Pairwise config (click the better response) with a "Both equal" box for a tie.
- More: List + Ranker, either an order (``order``: drag into order, best first) or tiers (``buckets``: drag each
  response into Best, OK or Worst; responses in one tier are tied).
- Responses are shown as "Response 1", "Response 2", …: Label Studio prints a ranked item's id, so the id is that
  label (the read-back maps ids through the task's own ``items``).
- Items with images show the first one (``<Image value="$image"/>``): a URL as is, a local file as Label Studio's
  local-files URL (``/data/local-files/?d=PATH``); tasks with and without images go to separate files, since a
  config's ``$image`` must be in every task of its project.
- Description checks (``rewardlab label``'s third kind) have no Label Studio config here: they are counted and left
  out (label them with ``rewardlab label``).
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal
from urllib.parse import quote

from rewardlab.collection.label_store import Item, is_local_path
from rewardlab.data.label_studio import BUCKETS, TIE_CHOICE, TIE_CONTROL

Ranking = Literal["order", "buckets"]
BUCKET_TITLES = {"best": "Best", "ok": "OK", "worst": "Worst"}
IMAGE = '  <Image name="image" value="$image"/>\n'
PAIRWISE_CONFIG = f"""<View>
  <Header value="Click the better response (tick “{TIE_CHOICE}” for a tie)"/>
{{image}}  <Text name="prompt" value="$prompt"/>
  <Pairwise name="comparison" toName="text1,text2"/>
  <View style="display: flex; gap: 1em;">
    <View style="flex: 1;"><Header value="Response 1" size="5"/><Text name="text1" value="$text1"/></View>
    <View style="flex: 1;"><Header value="Response 2" size="5"/><Text name="text2" value="$text2"/></View>
  </View>
  <Choices name="{TIE_CONTROL}" toName="prompt">
    <Choice value="{TIE_CHOICE}"/>
  </Choices>
</View>
"""
RANKER_CONFIG = """<View>
  <Header value="Drag the responses into order, best first"/>
{image}  <Text name="prompt" value="$prompt"/>
  <List name="responses" value="$items" title="Responses"/>
  <Ranker name="rank" toName="responses"/>
</View>
"""
BUCKET_CONFIG = (
    """<View>
  <Header value="Drag every response into a tier; responses in one tier are equally good"/>
{image}  <Text name="prompt" value="$prompt"/>
  <List name="responses" value="$items" title="Responses"/>
  <Ranker name="rank" toName="responses">
"""
    + "".join(f'    <Bucket name="{b}" title="{BUCKET_TITLES[b]}"/>\n' for b in BUCKETS)
    + """  </Ranker>
</View>
"""
)


@dataclass
class LabelStudioTasks:
    """What :func:`write_label_studio` wrote: ``files`` (tasks and config of each project) and ``counts``: tasks
    per file stem (``pairwise``, ``ranking``, ``…_images``), ``check_left_out`` (description checks not written)
    and ``images_not_shown`` (items whose second and later images the config does not show)."""

    files: list[Path] = field(default_factory=list)
    counts: dict[str, int] = field(default_factory=dict)

    def summary(self) -> str:
        """What was written and what was left out, in one line."""
        written = [f"{n} {name.partition('_')[0]} tasks" + (" with images" if name.endswith("_images") else "")
                   for name, n in self.counts.items() if name.startswith(("pairwise", "ranking"))]  # fmt: skip
        notes = [", ".join(written) or "no tasks"]
        if self.counts.get("check_left_out"):
            notes.append(f"{self.counts['check_left_out']} description-check items left out (no Label Studio "
                         "config for them here: label them with `rewardlab label DATA --db F`)")  # fmt: skip
        if self.counts.get("images_not_shown"):
            notes.append(f"{self.counts['images_not_shown']} items with several images show only their first")
        return "; ".join(notes)


def image_url(image: Any) -> Any:
    """An image as Label Studio loads it: a URL as is; a local file (the store keeps paths absolute) as its
    local-files URL, which Label Studio serves from its document root (``/`` by default)."""
    if is_local_path(image):
        return "/data/local-files/?d=" + quote(str(image).lstrip("/"))
    return image


def task_of(item: Item, ranking: Ranking = "order") -> dict[str, Any]:
    from rewardlab.collection.label_app import as_text  # the app's display text (imported here: it needs fastapi)

    data: dict[str, Any] = {"rewardlab_id": item.key, "prompt": as_text(item.prompt)}
    if item.task == "pair":
        data["text1"], data["text2"] = (as_text(r) for r in item.responses)
    else:
        data["items"] = [{"id": f"Response {k}", "body": as_text(r)} for k, r in enumerate(item.responses, start=1)]
        if ranking == "buckets":
            data["buckets"] = list(BUCKETS)  # the read-back's tier order (exports may not keep key order)
    if item.images:
        data["images"] = item.images
        data["image"] = image_url(item.images[0])
    return {"data": data}


def config_of(task: str, ranking: Ranking, images: bool) -> str:
    """The labeling config for ``task`` (``pair``/``rank``) items, with the image when they have one."""
    template = PAIRWISE_CONFIG if task == "pair" else BUCKET_CONFIG if ranking == "buckets" else RANKER_CONFIG
    return template.format(image=IMAGE if images else "")


def write_label_studio(items: list[Item], out_dir: str | Path, ranking: Ranking = "order") -> LabelStudioTasks:
    """``tasks_pairwise.json`` / ``tasks_ranking.json`` (``…_images.json`` for items with images) and their
    ``config_*.xml``: import each tasks file into a project set up with its config. Everything is built before
    the first file is written."""
    from rewardlab.data.files import atomic_write_text

    out = Path(out_dir)
    result = LabelStudioTasks()
    projects: dict[str, tuple[str, list[dict[str, Any]]]] = {}
    for item in items:
        if item.task == "check":
            result.counts["check_left_out"] = result.counts.get("check_left_out", 0) + 1
            continue
        name = ("pairwise" if item.task == "pair" else "ranking") + ("_images" if item.images else "")
        config = config_of(item.task, ranking, bool(item.images))
        projects.setdefault(name, (config, []))[1].append(task_of(item, ranking))
        if len(item.images) > 1:
            result.counts["images_not_shown"] = result.counts.get("images_not_shown", 0) + 1
    for name, (config, tasks) in sorted(projects.items()):
        text = json.dumps(tasks, indent=1, ensure_ascii=False)
        result.files.append(atomic_write_text(out / f"tasks_{name}.json", text))
        result.files.append(atomic_write_text(out / f"config_{name}.xml", config))
        result.counts[name] = len(tasks)
    return result


def import_label_studio(export: str, out: str | Path) -> dict[str, Any]:
    """Label Studio's JSON export → pairs at ``out`` and ranked groups at ``OUT.groups`` (as ``rewardlab label
    export`` writes them, one record per standing annotation). The whole export is read and checked before anything
    is written. Returns ``files``, ``records`` and the reader's ``counts`` (annotations left out included)."""
    from rewardlab.collection.label_export import write_pairs_and_groups
    from rewardlab.config.schema import DataSource
    from rewardlab.data.readers import read_records
    from rewardlab.data.records import PreferencePair

    records, report = read_records(DataSource(path=export))
    rows = []
    for record in records:
        row: dict[str, Any] = {"id": record.id, "prompt": record.prompt}
        if isinstance(record, PreferencePair):
            row.update(chosen=record.chosen, rejected=record.rejected)
        else:
            row.update(responses=list(record.responses), ranks=list(record.ranks))
        rows.append({**row, "images": list(record.images)} if record.images else row)
    files = write_pairs_and_groups(rows, Path(out))
    return {"files": files, "records": len(records), "counts": dict(sorted(report.counts.items()))}
