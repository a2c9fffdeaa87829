"""Label Studio interop: the items ``rewardlab label`` would show, as Label Studio tasks with a labeling config
(the Pairwise template for two responses, List + Ranker for more); its JSON export reads back as records
(``rewardlab.data.readers`` recognises it)."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from rewardlab.collection.label_app import as_text
from rewardlab.collection.label_store import Item

PAIRWISE_CONFIG = """<View>
  <Header value="Which response is better?"/>
  <Text name="prompt" value="$prompt"/>
  <Pairwise name="comparison" toName="text1,text2"/>
  <View style="display: flex; gap: 1em;">
    <View style="flex: 1;"><Text name="text1" value="$text1"/></View>
    <View style="flex: 1;"><Text name="text2" value="$text2"/></View>
  </View>
</View>
"""
RANKER_CONFIG = """<View>
  <Header value="Order the responses, best first"/>
  <Text name="prompt" value="$prompt"/>
  <List name="responses" value="$items" title="Responses"/>
  <Ranker name="rank" toName="responses"/>
</View>
"""


def task_of(item: Item) -> dict[str, Any]:
    data: dict[str, Any] = {"rewardlab_id": item.key, "prompt": as_text(item.prompt)}
    if item.task == "pair":
        data["text1"], data["text2"] = (as_text(r) for r in item.responses)
    else:
        data["items"] = [{"id": f"r{k}", "title": f"#{k + 1}", "body": as_text(r)}
                         for k, r in enumerate(item.responses)]  # fmt: skip
    if item.images:
        data["images"] = item.images
    return {"data": data}


def write_label_studio(items: list[Item], out_dir: str | Path) -> list[Path]:
    """``tasks_pairwise.json`` / ``tasks_ranking.json`` and their ``config_*.xml``: import the tasks into a project
    set up with the config."""
    from rewardlab.data.files import atomic_write_text

    out = Path(out_dir)
    written = []
    for task, name, config in (("pair", "pairwise", PAIRWISE_CONFIG), ("rank", "ranking", RANKER_CONFIG)):
        tasks = [task_of(i) for i in items if i.task == task]
        if tasks:
            written.append(atomic_write_text(out / f"tasks_{name}.json", json.dumps(tasks, indent=1,
                                                                                     ensure_ascii=False)))  # fmt: skip
            written.append(atomic_write_text(out / f"config_{name}.xml", config))
    return written
