"""``rewardlab generate``: K candidates per prompt → ranked-group JSONL without ranks (ready for labeling).

Each output row is ``{"id", "prompt", "responses": [K answers], ...the prompt row's other columns}`` (answers to
chat-message prompts are one-message assistant turns, as the readers expect beside a conversation), written and
flushed a batch at a time, so an interrupted run loses at most the batch in flight; a rerun with the same settings
skips the prompts already done (an unfinished last line is cut off first). ``OUT.meta.json`` records the model,
the sampling settings, the seed, ``prompt_form`` (``chat_template`` or ``plain``) and the package versions; a rerun
with other settings is refused rather than mixing two samplings in one file.
"""

from __future__ import annotations

import json
import logging
import os
from pathlib import Path
from typing import Any

from rewardlab.config.schema import DataSource, GenerateConfig
from rewardlab.errors import ConfigError, DataError

logger = logging.getLogger(__name__)

RECORDED = ("model", "k", "max_new_tokens", "temperature", "top_p", "seed", "chat_template", "max_tries")


def read_generation_prompts(cfg: GenerateConfig) -> list[tuple[str, dict[str, Any]]]:
    """``(id, row)`` per prompt; the id is the row's ``id`` column, else its row number."""
    from rewardlab.data.readers import iter_rows
    from rewardlab.data.validation import prompt_of

    out, seen = [], set()
    for rowno, row in iter_rows(DataSource(path=cfg.prompts)):
        prompt_of(row, cfg.prompt_column, cfg.prompts, rowno, "name yours with prompt_column=...")
        ident = str(row["id"]) if row.get("id") not in (None, "") else str(rowno)
        if ident in seen:
            raise DataError(f"id {ident!r} appears twice; ids name the groups, so they must be unique",
                            source=cfg.prompts, row=rowno, field="id")  # fmt: skip
        seen.add(ident)
        out.append((ident, row))
    if not out:
        raise DataError("no prompts", source=cfg.prompts)
    return out


def done_ids(out: Path) -> set[str]:
    """Ids already written to ``out``; an unfinished last line (a crash mid-write) is cut off."""
    from rewardlab.data.files import cut_unfinished_line

    data = cut_unfinished_line(out)
    ids = set()
    for n, line in enumerate(data.decode("utf-8").splitlines(), 1):
        try:
            ids.add(str(json.loads(line)["id"]))
        except (json.JSONDecodeError, KeyError, TypeError):
            raise DataError("not a candidates row; choose another --out, or remove the file to start over",
                            source=str(out), row=n) from None  # fmt: skip
    return ids


def check_settings(cfg: GenerateConfig, meta_path: Path, resuming: bool) -> None:
    if not resuming or not meta_path.is_file():
        return
    try:
        saved = json.loads(meta_path.read_text(encoding="utf-8")).get("settings", {})
    except json.JSONDecodeError:
        return
    current = cfg.model_dump()
    changed = [f"{k}: {saved.get(k)!r} → {current[k]!r}" for k in RECORDED if k in saved and saved[k] != current[k]]
    if changed:
        raise ConfigError(f"{cfg.out} was generated with other settings ({'; '.join(changed)}); use the same "
                          "settings to continue it, or another --out")  # fmt: skip


def run_generate(cfg: GenerateConfig) -> tuple[Path, int, int]:
    """Generate what ``cfg.out`` is missing. Returns (output path, groups written now, groups with duplicates)."""
    import torch
    from tqdm.auto import tqdm

    from rewardlab.collection.generate import CandidateGenerator
    from rewardlab.data.files import atomic_write_text, output_errors
    from rewardlab.recipes.run_record import environment

    prompts = read_generation_prompts(cfg)
    out = Path(cfg.out)
    meta_path = out.with_name(out.name + ".meta.json")
    done = done_ids(out)
    check_settings(cfg, meta_path, resuming=bool(done))
    todo = [(i, ident, row) for i, (ident, row) in enumerate(prompts) if ident not in done]
    if done:
        logger.info("%s: %d of %d prompts done; generating the other %d", out, len(done), len(prompts), len(todo))
    generator = CandidateGenerator(cfg.model, device=cfg.device, dtype=cfg.dtype, chat_template=cfg.chat_template)
    generator.check_prompts([row[cfg.prompt_column] for _, _, row in todo], cfg.prompts)
    meta = {"settings": cfg.model_dump(), "prompt_form": generator.prompt_form, "environment": environment()}
    written = duplicates = 0
    with output_errors(out):
        out.parent.mkdir(parents=True, exist_ok=True)
        atomic_write_text(meta_path, json.dumps(meta, indent=2))
        with out.open("a", encoding="utf-8") as f, tqdm(total=len(todo), desc="prompts", unit="prompt") as bar:
            for start in range(0, len(todo), cfg.batch_size):
                batch = todo[start : start + cfg.batch_size]
                torch.manual_seed(cfg.seed + batch[0][0])  # seeded by the batch's first prompt's position
                groups, dup = generator.generate([row[cfg.prompt_column] for _, _, row in batch], cfg.k,
                                                 max_new_tokens=cfg.max_new_tokens, temperature=cfg.temperature,
                                                 top_p=cfg.top_p, max_tries=cfg.max_tries)  # fmt: skip
                for (_, ident, row), responses in zip(batch, groups):
                    if isinstance(row[cfg.prompt_column], list):  # a conversation's answers are assistant turns
                        responses = [[{"role": "assistant", "content": r}] for r in responses]
                    extra = {k: v for k, v in row.items() if k not in (cfg.prompt_column, "id", "responses", "ranks")}
                    record = {"id": ident, "prompt": row[cfg.prompt_column], "responses": responses, **extra}
                    f.write(json.dumps(record, ensure_ascii=False) + "\n")
                f.flush()
                os.fsync(f.fileno())
                written += len(batch)
                duplicates += dup
                bar.update(len(batch))
    if duplicates:
        logger.warning("%d of %d groups still repeat an answer after %d resampling rounds (a model with little "
                       "variety at this temperature)", duplicates, written, cfg.max_tries)  # fmt: skip
    return out, written, duplicates
