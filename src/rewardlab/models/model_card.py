"""The model card (``README.md``) of an export: what the model is, how well it did, and exactly how to build
its input in each client so that every client reads the score training taught it (DESIGN.md §7)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from rewardlab.data.input_format import CONCAT_TEMPLATE
from rewardlab.models.export_meta import ExportMeta


def write_model_card(directory: Path, meta: ExportMeta) -> None:
    text = render_model_card(meta, name=directory.name.lstrip(".").split(".tmp-")[0])
    (directory / "README.md").write_text(text, encoding="utf-8")


def render_model_card(meta: ExportMeta, *, name: str) -> str:
    config = meta.config or {}
    base = (config.get("model") or {}).get("name_or_path")
    fmt = meta.input_format
    lora_ensemble = meta.kind == "lora"
    front = ["---", f"library_name: {'peft' if lora_ensemble else 'transformers'}", "tags: [reward-model, rewardlab]"]
    if fmt and not lora_ensemble:  # a LoRA ensemble is no single classifier: no pipeline loads it
        front.insert(2, "pipeline_tag: text-classification")
    if base and _looks_like_hub_name(base):
        front.append(f"base_model: {base}")
    parts = ["\n".join([*front, "---"]), f"# Reward model `{name}`", _summary(meta, base, config)]
    if fmt:
        parts += [_input_format(fmt, meta), _lora_ensemble_usage(fmt, meta) if lora_ensemble else _usage(fmt, meta)]
    else:
        parts.append(_vision_usage())
    parts.append(
        "## License\n\nThe weights are derived from the base model; its license applies to them. rewardlab "
        "(Apache-2.0) adds no terms."
    )
    return "\n\n".join(parts) + "\n"


def _looks_like_hub_name(name: str) -> bool:
    return name.count("/") == 1 and not name.startswith((".", "/", "~")) and not Path(name).exists()


def _summary(meta: ExportMeta, base: str | None, config: dict[str, Any]) -> str:
    lines = [
        "A reward model trained with [rewardlab](https://github.com/rewardlab/rewardlab): one scalar score per "
        "(prompt, response), higher is better. Only differences between scores of responses to the same prompt "
        "are meaningful: `P(a better than b) = sigmoid(score_a - score_b)`.",
        "",
        "| | |",
        "|---|---|",
        f"| base model | `{base or 'unknown'}` |",
    ]
    data = config.get("data") or {}
    train = data.get("train")
    if isinstance(train, dict):
        lines.append(f"| training data | `{train.get('path')}` |")
    if (loss := config.get("loss")) and isinstance(loss, dict):
        lines.append(f"| loss | {loss.get('name')} |")
    metrics = meta.metrics or {}
    if "eval_accuracy" in metrics:
        lines.append(f"| eval preference accuracy | {metrics['eval_accuracy']:.4f} |")
    if "eval_mean_margin" in metrics:
        lines.append(f"| eval mean margin | {metrics['eval_mean_margin']:.4f} |")
    if norm := meta.normalization:
        lines.append(f"| eval score mean / std | {norm.mean:.4f} / {norm.std:.4f} (n={norm.n}) |")
    lines.append(f"| max length | {meta.max_length} tokens (longer inputs: the prompt's start is cut) |")
    if meta.kind == "lora":
        lines.append(
            f"| ensemble | {meta.members} LoRA adapters, each with its own head, on one frozen base (`base/`, "
            "`members/member_k/`): the reward is the members' mean, their standard deviation the score's "
            "uncertainty; scoring needs peft (below) |"
        )
    elif meta.members > 1:
        lines.append(
            f"| ensemble | {meta.members} reward heads on one backbone: `logits[:, 0]` is their mean (the reward), "
            f"`logits[:, 1:]` the members (`id2label`); their standard deviation is the score's uncertainty |"
        )
    if meta.attributes:
        lines.append(
            f"| attributes | {len(meta.attributes)} regression heads after the preference score: `logits[:, 0]` is "
            "the reward, `logits[:, k]` attribute k (`id2label`) on a 0–1 scale, 0 = the range's min, 1 = its max |"
        )
        lines += [
            f"| attribute `{name}` | `logits[:, {k}]`; rating ≈ {low:g} + {high - low:g} × logit (range "
            f"[{low:g}, {high:g}]) |"
            for k, (name, (low, high)) in enumerate(meta.attributes.items(), 1)
        ]
    return "\n".join(lines)


def _input_format(fmt: dict[str, Any], meta: ExportMeta) -> str:
    recipe = fmt.get("recipe", "tokenizer(prompt + response)")
    if fmt.get("layout") == "pair":
        how = (
            "An encoder scored at `[CLS]`: the prompt and the response are a text pair, "
            "`[CLS] prompt [SEP] response [SEP]` with segment ids 0/1."
        )
    elif fmt.get("layout") == "joined":
        how = (
            "An encoder scored at `[CLS]`: `prompt + response`, concatenated exactly as given, is one segment, "
            "`[CLS] prompt+response [SEP]`, as the tokenizer's natural call builds it."
        )
    else:
        end = (
            "the tokenizer appends the EOS token, where the score is read"
            if fmt.get("append_eos")
            else "nothing is added (no BOS, no EOS); the score is read at the response's last token"
        )
        how = (
            "`prompt + response`, concatenated exactly as given (no separator: put any space or newline you "
            f"trained with inside the strings) and tokenized together; {end}."
        )
    template = {
        "trained": "Chat messages are rendered with the tokenizer's chat template, the one used in training, and "
        "tokenized without added special tokens.",
        "concat": "It was trained on plain strings: its chat template renders `[user, assistant]` as "
        f"`prompt + response` (`{CONCAT_TEMPLATE}`), so template-driven tools build the trained input.",
    }.get(
        fmt.get("chat_template"),
        "It was trained on plain strings as a text pair, which tools that render a conversation into one string "
        "(reward-bench, TRL) do not build: use the calls below."
        if fmt.get("layout") == "pair"
        else "It was trained on plain strings: build the input with the calls below.",
    )
    pad = (
        ""
        if not meta.pad_equals_eos
        else (
            "\n\nThe pad token is the EOS token (the vocabulary has no other): Hugging Face's own pooling skips "
            "trailing EOS tokens, so do not end inputs with one."
        )
    )
    return f"## Input format\n\nBuild the input with `{recipe}`. {how} {template}{pad}"


# OpenRLHF 0.11's reward-normalization buffers (mean, std) are not restored from config.json when it loads a model
# under transformers 5: they hold uninitialised memory (OpenRLHF PR #1343); the interop test sets them as below.
OPENRLHF_BUFFERS = (
    " With transformers 5, OpenRLHF 0.11 loads those two buffers uninitialised: after "
    "`get_llm_for_sequence_regression(..., normalize_reward=True)`, set them from the config "
    "(`model.mean.fill_(model.config.mean); model.std.fill_(model.config.std)`)."
)


def _tokenizer_call(fmt: dict[str, Any]) -> str:
    """The tokenizer call that builds one (prompt, response) input as trained."""
    pair = fmt.get("layout") == "pair"
    call = 'tok(prompt, response, return_tensors="pt")' if pair else 'tok(prompt + response, return_tensors="pt")'
    if "add_special_tokens=False" in fmt.get("recipe", ""):
        call = call.replace(")", ", add_special_tokens=False)")
        call = call.replace("response,", "response + tok.eos_token,") if fmt.get("append_eos") else call
    return call


def _usage(fmt: dict[str, Any], meta: ExportMeta) -> str:
    pair = fmt.get("layout") == "pair"
    encoder = fmt.get("layout") in ("pair", "joined")  # [CLS] ... [SEP]: special tokens TRL's GRPO path leaves out
    call = _tokenizer_call(fmt)
    pipe_input = '{"text": prompt, "text_pair": response}' if pair else "prompt + response"
    trl_exact = not encoder and not fmt.get("append_eos")
    trl = (
        '`GRPOTrainer(reward_funcs=["<this directory>"], ...)` scores completions as trained, for plain and '
        "conversational prompts. For weights, normalization or several RMs, `rewardlab.rl.ModelReward` does the same "
        "through rewardlab's scorer."
        if trl_exact
        else "TRL's GRPO reward path cannot build this input (it tokenizes `prompt + completion` without special "
        "tokens), so pass rewardlab's reward function instead of the directory:\n\n```python\n"
        "from rewardlab.rl import ModelReward\n\nGRPOTrainer(..., reward_funcs=[ModelReward.from_pretrained("
        '"<this directory>")])\n```'
    )
    reader = "`rewardlab score --normalize`" + ("" if encoder else " and OpenRLHF (`--normalize_reward`)")
    normalize = (
        f"\n\n`config.json` carries `mean` and `std` of the eval scores, used to normalize by {reader}."
        + ("" if encoder else OPENRLHF_BUFFERS)
        if meta.normalization
        else ""
    )
    openrlhf = (
        "Encoders cannot be loaded by OpenRLHF (it expects a decoder with a `score` head)."
        if encoder
        else 'OpenRLHF\'s `get_llm_for_sequence_regression(dir, "reward", value_head_prefix="score")` loads it '
        "and reads the last attended token; give it the ids above."
    )
    return f"""## Score it

### transformers

```python
import torch
from transformers import AutoModelForSequenceClassification, AutoTokenizer

tok = AutoTokenizer.from_pretrained("<this directory>")
model = AutoModelForSequenceClassification.from_pretrained("<this directory>").eval()
with torch.no_grad():
    score = model(**{call}).logits[0, 0].item()
```

Batches pad on the right (the tokenizer's default here). `pipeline("text-classification", model="<this directory>",
function_to_apply="none")` on `{pipe_input}` gives the same score.

### TRL

{trl}

### OpenRLHF and vLLM

{openrlhf} vLLM serves it as a pooling model (`vllm serve <this directory> --runner pooling`); build
prompts as above.{normalize}

### rewardlab

```bash
rewardlab score --model <this directory> --input answers.jsonl --output scores.jsonl
```"""


def _lora_ensemble_usage(fmt: dict[str, Any], meta: ExportMeta) -> str:
    base = f'"{meta.adapter["base_model"]}"' if meta.adapter else 'f"{d}/base"'
    where = (
        f"The base model is `{meta.adapter['base_model']}` (not copied here)"
        if meta.adapter
        else "`base/` holds the frozen base model (its own head is untrained: never score with it alone)"
    )
    return f"""## Score it

An ensemble of {meta.members} LoRA reward models on one base. {where}; `members/member_k/` holds member k's LoRA
adapter and head. K adapters cannot be merged into one model, so this directory has no `config.json`:
transformers alone, `pipeline`, TRL's `reward_funcs=["<this directory>"]`, OpenRLHF's loader and vLLM cannot load
it, and the `logits[:, 0]` of an ensemble of heads does not exist here. Score it with transformers + peft, one
member at a time; the reward is the members' mean, their standard deviation its uncertainty:

```python
import statistics

import torch
from peft import PeftModel
from transformers import AutoModelForSequenceClassification, AutoTokenizer

d, members = "<this directory>", [f"member_{{k}}" for k in range(1, {meta.members + 1})]
tok = AutoTokenizer.from_pretrained(d)
model = PeftModel.from_pretrained(AutoModelForSequenceClassification.from_pretrained({base}),
                                  f"{{d}}/members/member_1", adapter_name="member_1").eval()
for name in members[1:]:
    model.load_adapter(f"{{d}}/members/{{name}}", adapter_name=name)
scores = []
with torch.no_grad():
    for name in members:
        model.set_adapter(name)
        scores.append(model(**{_tokenizer_call(fmt)}).logits[0, 0].item())
reward, uncertainty = statistics.mean(scores), statistics.pstdev(scores)
```

### TRL and OpenRLHF

In TRL, pass rewardlab's reward function: `GRPOTrainer(..., reward_funcs=[ModelReward.from_pretrained(
"<this directory>")])` (`from rewardlab.rl import ModelReward`). For OpenRLHF, serve it with `rewardlab serve
--model <this directory>` and point `--remote_rm_url` at its `/get_reward`.

### rewardlab

```bash
rewardlab score --model <this directory> --input answers.jsonl --output scores.jsonl
```

`score`, `compare`, `rank`, `serve` and `eval` report the members' spread as the uncertainty."""


def _vision_usage() -> str:
    return """## Score it

A vision-language reward model with rewardlab's scalar head (`reward_head.safetensors`): load and score it with
rewardlab, which builds the image placeholders and the prompt layout it was trained with.

```python
from rewardlab.models.scorer import Scorer

scorer = Scorer.from_pretrained("<this directory>")
scorer.score(prompt, [response], images=[("page.png",)])
```"""
