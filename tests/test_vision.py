"""Vision-language reward models on tiny random LLaVA, Qwen2-VL and Qwen2.5-VL built from configs.

The same test bodies run for a text decoder too (``FAMILIES`` includes ``qwen2``): the collator, RewardModel,
trainer and Scorer are one code path for both modalities.
"""

from __future__ import annotations

import dataclasses
import math
from pathlib import Path

import pytest
import torch
from safetensors.torch import load_file

from rewardlab.config import TrainConfig, build_config
from rewardlab.data.records import PreferencePair, RankedGroup
from rewardlab.errors import DataError
from rewardlab.models.bundle import RewardBundle
from rewardlab.models.checkpoint import save_reward_model
from rewardlab.models.export_meta import ExportMeta
from rewardlab.models.scorer import Scorer
from rewardlab.recipes.train import run_train
from tests.conftest import VISION_FAMILIES
from tests.tiny import make_tiny, pair_rows
from tests.tiny import write_jsonl as write_rows

VISION = list(VISION_FAMILIES)
FAMILIES = ["qwen2", *VISION]


@pytest.fixture(scope="module")
def models(tiny_vlms, tmp_path_factory):
    return {**tiny_vlms, "qwen2": make_tiny(tmp_path_factory.mktemp("text") / "qwen2")}


def scorer_for(path, side="right") -> Scorer:
    bundle = RewardBundle.load(path, max_length=256)
    return Scorer(dataclasses.replace(bundle, padding_side=side))


def sample_pairs(family, shots):
    pairs = shots[1][:4]
    return pairs if family in VISION else [PreferencePair(p.prompt, p.chosen, p.rejected) for p in pairs]


@pytest.mark.parametrize("family", FAMILIES)
def test_scores_do_not_depend_on_padding_side(models, shots, family):
    pairs = sample_pairs(family, shots)
    scorer = scorer_for(models[family], "right")  # one model: a raw VLM gets a freshly initialised head per load
    right = scorer.score_pairs(pairs)
    scorer.collator.padding_side = "left"
    left = scorer.score_pairs(pairs)
    assert left[0] == pytest.approx(right[0], abs=1e-5) and left[1] == pytest.approx(right[1], abs=1e-5)


@pytest.mark.parametrize("family", FAMILIES)
def test_save_load_gives_identical_scores(models, shots, tmp_path, family):
    pairs = sample_pairs(family, shots)
    scorer = scorer_for(models[family])
    with torch.no_grad():
        for p in scorer.model.backbone.score.parameters():
            p.add_(0.3)  # a trained head, not the freshly initialised one
    before = scorer.score_pairs(pairs)
    bundle = scorer.tokenizer
    if family in VISION:
        from rewardlab.models.vision import ProcessorBundle

        bundle = ProcessorBundle(scorer.tokenizer, scorer.transform.image_processor)
    out = save_reward_model(scorer.model, bundle, tmp_path / "export", ExportMeta(max_length=256))
    after = Scorer.from_pretrained(str(out), device="cpu").score_pairs(pairs)
    assert after[0] == pytest.approx(before[0], abs=1e-6) and after[1] == pytest.approx(before[1], abs=1e-6)


def test_a_vlm_without_a_reward_head_warns_that_its_scores_are_random(models, tmp_path, caplog):
    family = VISION[0]
    with caplog.at_level("WARNING", logger="rewardlab.models.checkpoint"):
        scorer = scorer_for(models[family])
    assert "without a reward head" in caplog.text and "random" in caplog.text
    from rewardlab.models.vision import ProcessorBundle

    bundle = ProcessorBundle(scorer.tokenizer, scorer.transform.image_processor)
    out = save_reward_model(scorer.model, bundle, tmp_path / "export", ExportMeta(max_length=256))
    caplog.clear()
    with caplog.at_level("WARNING", logger="rewardlab.models.checkpoint"):
        RewardBundle.load(out)
    assert "without a reward head" not in caplog.text  # an export carries its head


@pytest.mark.parametrize("family", VISION)
def test_image_encoded_once_per_pair_gives_the_same_scores(models, shots, family):
    """The pair batch sends each image once (image_rows); scoring each row with its own copy agrees."""
    from rewardlab.data.collator import PairCollator

    scorer = scorer_for(models[family])
    pairs = shots[1][:3]
    batch = PairCollator(scorer.tokenizer.pad_token_id)([scorer.transform.encode_pair(p) for p in pairs])
    assert batch["image_rows"].tolist() == [0, 1, 2, 0, 1, 2]
    n_images = batch["image_grid_thw"].shape[0] if "image_grid_thw" in batch else batch["pixel_values"].shape[0]
    assert n_images == 3  # not 6
    with torch.no_grad():
        shared = scorer.model(**batch)
    separate = scorer.score_pairs(pairs)
    assert shared[:3].tolist() == pytest.approx(separate[0], abs=1e-5)
    assert shared[3:].tolist() == pytest.approx(separate[1], abs=1e-5)


def train_config(tmp_path, base, data, **model):
    return build_config(TrainConfig, {
        "output_dir": str(tmp_path / "run"),
        "data": {"train": str(data), "max_length": 256},
        "model": {"name_or_path": str(base), **model},
        "training": {"max_steps": 6, "per_device_train_batch_size": 8, "learning_rate": 5e-3, "logging_steps": 1,
                     "save_strategy": "no", "warmup_steps": 0, "lr_scheduler_type": "constant"},
    })  # fmt: skip


@pytest.mark.parametrize("family", FAMILIES)
def test_training_steps_lower_the_loss(models, shots, tmp_path, family):
    root, pairs = shots
    data = root / "train.jsonl"
    if family not in VISION:
        data = write_rows(tmp_path / "text.jsonl", pair_rows(pairs))
    result = run_train(train_config(tmp_path, models[family], data))
    rows = [r for r in (result.run_dir / "metrics.jsonl").read_text().splitlines() if '"loss"' in r]
    losses = [float(r.split('"loss": ')[1].split(",")[0]) for r in rows]
    assert len(losses) == 6 and losses[-1] < losses[0]


def test_frozen_vision_tower_is_bit_identical_after_training(models, shots, tmp_path):
    root, _ = shots
    result = run_train(train_config(tmp_path, models["llava"], root / "train.jsonl", freeze_vision_tower=True))
    before, after = load_file(models["llava"] / "model.safetensors"), load_file(result.model_dir / "model.safetensors")
    tower = [k for k in before if "vision_tower" in k]
    assert tower and all(torch.equal(before[k], after[k]) for k in tower)
    language = [k for k in before if "language_model" in k and "layers" in k]
    assert any(not torch.equal(before[k], after[k]) for k in language)


def test_llava_next_images_of_any_shape_batch_together(models, tmp_path):
    """LLaVA-NeXT tiles each image by its aspect ratio, so images need different token and tile counts; a batch
    of them (tiles zero-padded) scores as each image alone."""
    from PIL import Image

    from rewardlab.data.collator import PairCollator

    scorer = scorer_for(models["llava_next"])
    pairs = []
    for i, size in enumerate([(64, 64), (200, 60), (60, 200), (150, 100)]):
        Image.new("RGB", size, (40 * i, 90, 200)).save(tmp_path / f"{i}.png")
        pairs.append(
            PreferencePair(
                "Describe this web page.", "a blue page", "a red page", images=(str(tmp_path / f"{i}.png"),)
            )
        )
    features = [scorer.transform.encode_pair(p) for p in pairs]
    assert len({f["image_tokens"] for f in features}) == 4  # one count per shape
    batch = PairCollator(scorer.tokenizer.pad_token_id)(features)
    assert batch["pixel_values"].shape[:2] == (4, max(torch.as_tensor(f["pixel_values"]).shape[1] for f in features))
    with torch.no_grad():
        together = scorer.model(**batch).tolist()
    alone = [s for p in pairs for s in scorer.model(**PairCollator(scorer.tokenizer.pad_token_id)(
        [scorer.transform.encode_pair(p)])).tolist()]  # fmt: skip
    assert together[:4] == pytest.approx(alone[0::2], abs=1e-5) and together[4:] == pytest.approx(
        alone[1::2], abs=1e-5
    )


@pytest.mark.parametrize("family", VISION)
def test_records_with_several_images_batch_with_single_image_ones(models, shots, tmp_path, family):
    """Two images (e.g. before/after screenshots) each get their placeholder block, in order; a batch mixing
    one- and two-image records scores as each record alone, and the images' order matters."""
    from PIL import Image

    from rewardlab.data.collator import PairCollator

    scorer = scorer_for(models[family])
    pages = shots[1]
    wide = tmp_path / "wide.png"
    Image.open(pages[1].images[0]).resize((300, 120)).save(wide)
    two = PreferencePair(pages[0].prompt, pages[0].chosen, pages[0].rejected, images=(pages[0].images[0], str(wide)))
    swapped = PreferencePair(two.prompt, two.chosen, two.rejected, images=two.images[::-1])
    pairs = [pages[2], two, pages[3], swapped]
    features = [scorer.transform.encode_pair(p) for p in pairs]
    one_image, both = scorer.transform.image_token_counts(scorer.transform.pixel_inputs(pages[0].images)), features[1]
    assert len(both["image_tokens"]) == 2 and both["image_tokens"][0] == one_image[0]
    ids = torch.tensor(both["chosen_input_ids"])
    assert int((ids == scorer.transform.image_token_id).sum()) == sum(both["image_tokens"])
    batch = PairCollator(scorer.tokenizer.pad_token_id)(features)
    # Row order: 4 chosen rows then 4 rejected rows; records 1 and 3 show images (1, 2) and (4, 3) of the batch.
    assert batch["image_rows"].tolist() == [0, 1, 2, 3, 4, 5, 0, 1, 2, 3, 4, 5]
    with torch.no_grad():
        together = scorer.model(**{k: v for k, v in batch.items() if k != "margin"}).tolist()
    alone = [scorer.score_pairs([p]) for p in pairs]
    assert together[:4] == pytest.approx([c[0] for c, _ in alone], abs=1e-5)
    assert together[4:] == pytest.approx([r[0] for _, r in alone], abs=1e-5)
    assert abs(together[1] - together[3]) > 1e-6  # the same text and images in the other order: another input


def test_training_on_records_with_several_images(models, shots, tmp_path):
    import json

    root, pairs = shots
    rows = [{"prompt": p.prompt, "chosen": p.chosen, "rejected": p.rejected,
             "images": [p.images[0], pairs[(i + 1) % len(pairs)].images[0]] if i % 2 else list(p.images)}
            for i, p in enumerate(pairs)]  # fmt: skip
    cfg = train_config(tmp_path, models["qwen2_vl"], write_rows(tmp_path / "two.jsonl", rows))
    cfg.data.num_irrelevant_pairs = 1  # swaps only between records with as many images and image tokens
    result = run_train(cfg)
    logged = [json.loads(x) for x in (result.run_dir / "metrics.jsonl").read_text().splitlines()]
    losses = [r["loss"] for r in logged if "loss" in r]
    assert len(losses) == 6 and losses[-1] < losses[0]
    assert all(0 <= r["irrelevant_accuracy"] <= 1 for r in logged if "loss" in r)


def screenshot_groups(pairs) -> list[RankedGroup]:
    """A ranked group per page: its description, the one-attribute-off one, and another page's description."""
    return [
        RankedGroup(p.prompt, (p.chosen, p.rejected, pairs[(i + 1) % len(pairs)].chosen), (1, 2, 2), p.images, f"g{i}")
        for i, p in enumerate(pairs)
    ]


@pytest.mark.parametrize("family", VISION)
def test_ranked_group_sends_its_image_once_and_scores_like_single_rows(models, shots, family):
    from rewardlab.data.collator import GroupCollator

    scorer = scorer_for(models[family])
    groups = screenshot_groups(shots[1][:3])
    batch = GroupCollator(scorer.tokenizer.pad_token_id)([scorer.transform.encode_group(g) for g in groups])
    assert batch["image_rows"].tolist() == [0, 0, 0, 1, 1, 1, 2, 2, 2]
    assert batch["group_sizes"].tolist() == [3, 3, 3] and batch["ranks"].tolist() == [1, 2, 2] * 3
    n_images = batch["image_grid_thw"].shape[0] if "image_grid_thw" in batch else batch["pixel_values"].shape[0]
    assert n_images == 3  # one per group, not one per response
    assert ("mm_token_type_ids" in batch) == family.startswith("qwen")
    model_inputs = {k: v for k, v in batch.items() if k not in ("ranks", "group_sizes")}
    with torch.no_grad():
        shared = scorer.model(**model_inputs).tolist()
    separate = [s for g in groups for s in scorer.score(g.prompt, list(g.responses), images=[g.images] * 3)]
    assert shared == pytest.approx(separate, abs=1e-5)


def test_listwise_training_on_ranked_groups_with_images(models, shots, tmp_path):
    import json

    from rewardlab.errors import ConfigError

    root, pairs = shots
    rows = [{"prompt": g.prompt, "responses": list(g.responses), "ranks": list(g.ranks), "images": list(g.images)}
            for g in screenshot_groups(pairs)]  # fmt: skip
    data = write_rows(tmp_path / "groups.jsonl", rows)
    cfg = train_config(tmp_path, models["llava"], data)
    cfg.data.ranked_as = "groups"
    cfg.loss.name = "plackett_luce"
    result = run_train(cfg)
    logged = [json.loads(x) for x in (result.run_dir / "metrics.jsonl").read_text().splitlines()]
    losses = [r["loss"] for r in logged if "loss" in r]
    assert len(losses) == 6 and losses[-1] < losses[0]
    cfg.data.num_irrelevant_pairs = 1
    with pytest.raises(ConfigError, match="num_irrelevant_pairs works on pairs"):
        run_train(cfg)


def test_missing_or_corrupt_image_names_the_record(models, shots, tmp_path):
    scorer = scorer_for(models["llava"])
    bad = tmp_path / "bad.png"
    bad.write_bytes(b"not a png")
    for image, message in ((tmp_path / "none.png", "not found"), (bad, "corrupt or not an image")):
        pair = PreferencePair("Describe this web page.", "a", "b", images=(str(image),), id="rec-7")
        with pytest.raises(DataError, match=f"record rec-7: image .*{message}"):
            scorer.transform.encode_pair(pair)


def test_images_load_from_paths_urls_bytes_and_pil_alike(shots, tmp_path):
    import functools
    import http.server
    import threading

    from PIL import Image

    from rewardlab.data.transforms import load_image

    root, pairs = shots
    path = pairs[0].images[0]
    expected = Image.open(path).convert("RGB").tobytes()
    handler = functools.partial(http.server.SimpleHTTPRequestHandler, directory=str(root / "train"))
    handler.log_message = lambda *a, **k: None
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    try:
        url = f"http://127.0.0.1:{server.server_address[1]}/"
        name = path.rsplit("/", 1)[-1]
        sources = [path, url + name, {"bytes": Path(path).read_bytes(), "path": None}, Image.open(path)]
        assert all(load_image(src, None).tobytes() == expected for src in sources)
        with pytest.raises(DataError, match=r"image http://127\.0\.0\.1:\d+/missing\.png could not be fetched.*404"):
            load_image(url + "missing.png", None)
    finally:
        server.shutdown()
    relative = {"bytes": None, "path": name}
    assert load_image(relative, root / "train").tobytes() == expected  # a dict's path resolves like a string's
    with pytest.raises(DataError, match="must be a path, an http"):
        load_image(3, None)


def test_photo_exif_orientation_is_applied(tmp_path):
    from PIL import Image

    from rewardlab.data.transforms import load_image

    img = Image.new("RGB", (40, 20), "red")
    exif = img.getexif()
    exif[0x0112] = 6  # "rotate 90° clockwise to display"
    img.save(tmp_path / "photo.jpg", exif=exif)
    assert load_image(str(tmp_path / "photo.jpg"), None).size == (20, 40)


def test_irrelevant_query_rows_and_loss_on_a_hand_built_batch(models, shots):
    from rewardlab.config.schema import LossConfig
    from rewardlab.data.collator import PairCollator
    from rewardlab.training.arguments import build_training_args
    from rewardlab.training.losses import bradley_terry_loss
    from rewardlab.training.trainer import RewardTrainer

    scorer = scorer_for(models["llava"])
    features = [scorer.transform.encode_pair(p) for p in shots[1][:3]]
    batch = PairCollator(scorer.tokenizer.pad_token_id, num_irrelevant_pairs=1)(features)
    assert batch["irrelevant_pairs"].tolist() == [[0, 6], [1, 7], [2, 8]]
    assert batch["image_rows"].tolist() == [0, 1, 2, 0, 1, 2, 1, 2, 0]  # chosen text of pair i, image of pair i+1
    assert torch.equal(batch["input_ids"][6:], batch["input_ids"][:3])

    class FixedScores(torch.nn.Module):
        def forward(self, **_):
            return torch.tensor([2.0, 0.5, 1.0, 1.0, 0.0, 1.5, -1.0, 0.5, 3.0])

    args = build_training_args("unused", {"report_to": "none"}, has_eval=False, seed=0)
    trainer = RewardTrainer(model=scorer.model, args=args, loss_config=LossConfig(irrelevant_loss_weight=0.5),
                            export_meta={})  # fmt: skip
    stub = FixedScores().eval()
    loss = trainer.compute_loss(stub, {**batch, "margin": torch.zeros(3)})
    s = stub()
    expected = bradley_terry_loss(s[:3], s[3:6]) + 0.5 * bradley_terry_loss(s[[0, 1, 2]], s[[6, 7, 8]])
    assert loss.item() == pytest.approx(expected.item(), abs=1e-7)


@pytest.mark.parametrize("family", ["llava", "qwen2_vl"])
def test_irrelevant_rows_swap_the_text_or_both(models, shots, family):
    from rewardlab.data.collator import PairCollator

    scorer = scorer_for(models[family])
    features = [scorer.transform.encode_pair(p) for p in shots[1][:3]]
    pad = scorer.tokenizer.pad_token_id
    text = PairCollator(pad, num_irrelevant_pairs=1, irrelevant_swap="text")(features)
    assert text["irrelevant_pairs"].tolist() == [[0, 6], [1, 7], [2, 8]]
    assert text["image_rows"].tolist()[6:] == [0, 1, 2]  # pair i's own image ...
    assert torch.equal(text["input_ids"][6:], text["input_ids"][[1, 2, 0]])  # ... with pair i+1's chosen text
    if family == "qwen2_vl":
        assert torch.equal(text["mm_token_type_ids"][6:], text["mm_token_type_ids"][[1, 2, 0]])
    both = PairCollator(pad, num_irrelevant_pairs=1, irrelevant_swap="both")(features)
    assert both["irrelevant_pairs"].tolist() == [[0, 6], [0, 7], [1, 8], [1, 9], [2, 10], [2, 11]]
    assert both["image_rows"].tolist()[6:] == [1, 0, 2, 1, 0, 2]
    assert torch.equal(both["input_ids"][6:], both["input_ids"][[0, 1, 1, 2, 2, 0]])
    # A pair whose chosen text is the same as pair 0's is no irrelevant text for pair 0: the next one is taken.
    twin = [features[0], {**features[1], "chosen_input_ids": features[0]["chosen_input_ids"]}, features[2]]
    batch = PairCollator(pad, num_irrelevant_pairs=1, irrelevant_swap="text")(twin)
    assert torch.equal(batch["input_ids"][6], batch["input_ids"][2]) and batch["image_rows"][6] == 0


@pytest.mark.parametrize("swap", ["image", "both"])
def test_training_with_irrelevant_queries_logs_them_separately(models, shots, tmp_path, swap):
    import json

    from rewardlab.errors import ConfigError

    root, pairs = shots
    cfg = train_config(tmp_path, models["llava"], root / "train.jsonl")
    cfg.data.num_irrelevant_pairs = 2
    cfg.data.irrelevant_swap = swap
    result = run_train(cfg)
    rows = [json.loads(x) for x in (result.run_dir / "metrics.jsonl").read_text().splitlines()]
    logged = [r for r in rows if "loss" in r]
    assert all(0 <= r["irrelevant_accuracy"] <= 1 and r["irrelevant_loss"] > 0 for r in logged)
    text_cfg = train_config(tmp_path, models["qwen2"], write_rows(tmp_path / "t.jsonl", pair_rows(pairs)))
    text_cfg.data.num_irrelevant_pairs = 1
    with pytest.raises(ConfigError, match="num_irrelevant_pairs needs a vision-language model"):
        run_train(text_cfg)


@pytest.mark.parametrize("family", ["llava", "qwen2_vl"])
def test_lora_on_the_language_model_with_checkpointing_exports_merged(models, shots, tmp_path, family):
    root, pairs = shots
    cfg = train_config(tmp_path, models[family], root / "train.jsonl", lora={"r": 4, "alpha": 8, "dropout": 0.0})
    cfg.training.update(max_steps=3, activation_checkpointing=True)
    result = run_train(cfg)
    assert not (result.model_dir / "adapter_config.json").exists()
    exported = load_file(result.model_dir / "model.safetensors")
    assert not any("lora_" in k for k in exported)
    base = load_file(models[family] / "model.safetensors")
    changed = [k for k in base if not torch.equal(base[k], exported[k])]
    vision_parts = ("vision_tower", "multi_modal_projector", "visual")
    assert changed and not any(part in k for k in changed for part in vision_parts)  # language model only
    scores = Scorer.from_pretrained(str(result.model_dir), device="cpu").score_pairs(pairs[:2])
    assert all(map(lambda x: x == x, scores[0] + scores[1]))  # finite, no NaN


@pytest.mark.slow
def test_bench_vision_runs_and_both_variants_agree():
    import subprocess
    import sys
    from pathlib import Path

    script = Path(__file__).resolve().parents[1] / "bench" / "bench_vision.py"
    proc = subprocess.run([sys.executable, str(script), "--pairs", "2", "--image-size", "64", "--steps", "1"],
                          capture_output=True, text=True, timeout=1800)  # fmt: skip
    assert proc.returncode == 0, proc.stderr[-2000:]
    assert "identical scores: True" in proc.stdout and "speed-up:" in proc.stdout
    scoring = [sys.executable, str(script), "--scoring", "--family", "qwen2_vl", "--pairs", "3", "--image-size", "56",
               "--steps", "1"]  # fmt: skip
    proc = subprocess.run(scoring, capture_output=True, text=True, timeout=1800)
    assert proc.returncode == 0, proc.stderr[-2000:]
    assert float(proc.stdout.split("largest score difference: ")[1].split()[0]) < 1e-4


def test_scoring_sends_an_image_shared_by_rows_once(models, shots):
    from rewardlab.data.collator import RowCollator

    scorer = scorer_for(models["qwen2_vl"])
    page = shots[1][0]
    pixels = scorer.transform.pixel_inputs(page.images)
    encoded = [scorer.transform.encode(page.prompt, text, pixels=pixels) for text in (page.chosen, page.rejected)]
    rows = [{"input_ids": e.input_ids, **e.extras} for e in encoded]
    shared = RowCollator(scorer.tokenizer.pad_token_id)([{**r, "image_key": ("page",)} for r in rows])
    separate = RowCollator(scorer.tokenizer.pad_token_id)(rows)
    assert shared["image_grid_thw"].shape[0] == 1 and shared["image_rows"].tolist() == [0, 0]
    assert separate["image_grid_thw"].shape[0] == 2 and separate["image_rows"].tolist() == [0, 1]
    with torch.no_grad():
        assert scorer.model(**shared).tolist() == pytest.approx(scorer.model(**separate).tolist(), abs=1e-5)


@pytest.fixture(scope="module")
def vision_export(models, tmp_path_factory):
    from rewardlab.models.vision import ProcessorBundle

    scorer = scorer_for(models["llava"])
    with torch.no_grad():
        for p in scorer.model.backbone.score.parameters():
            p.add_(0.3)
    bundle = ProcessorBundle(scorer.tokenizer, scorer.transform.image_processor)
    return save_reward_model(
        scorer.model, bundle, tmp_path_factory.mktemp("vexport") / "model", ExportMeta(max_length=256)
    )


def test_score_compare_rank_commands_take_images(vision_export, models, shots, tmp_path, capsys):
    import json
    import shutil

    from rewardlab.cli import main

    root, pairs = shots
    for p in pairs[:3]:
        shutil.copy(p.images[0], tmp_path)
    rows = [{"prompt": p.prompt, "response": p.chosen, "images": [Path(p.images[0]).name]} for p in pairs[:3]]
    data = write_rows(tmp_path / "rows.jsonl", rows)  # image paths relative to the file
    out = tmp_path / "scores.jsonl"
    assert main(["score", "--model", str(vision_export), "--input", str(data), "--output", str(out)]) == 0
    got = [json.loads(x)["score"] for x in out.read_text().splitlines()]
    expected = Scorer.from_pretrained(str(vision_export), device="cpu").score_pairs(pairs[:3])[0]
    assert got == pytest.approx(expected, abs=1e-5)

    image = pairs[0].images[0]
    args = ["--model", str(vision_export), "--prompt", pairs[0].prompt]
    assert main(["compare", *args, "--a", pairs[0].chosen, "--b", pairs[0].rejected, "--image", image]) == 0
    comparison = json.loads(capsys.readouterr().out)
    assert comparison["score_a"] == pytest.approx(expected[0], abs=1e-5)
    assert main(["rank", *args, "--response", pairs[0].rejected, "--response", pairs[0].chosen, "--image", image]) == 0
    ranked = json.loads(capsys.readouterr().out)
    assert {r["index"]: r["score"] for r in ranked}[1] == pytest.approx(expected[0], abs=1e-5)

    # Bad input: exit 2, one line naming the file, row and field, nothing written.
    capsys.readouterr()
    bad = write_rows(tmp_path / "bad.jsonl", [rows[0], {"prompt": "p", "response": "r", "images": ["nope.png"]}])
    assert main(["score", "--model", str(vision_export), "--input", str(bad), "--output", str(tmp_path / "x")]) == 2
    assert f"{bad}:2:images: image {tmp_path / 'nope.png'} not found" in capsys.readouterr().err
    no_images = write_rows(tmp_path / "none.jsonl", [{"prompt": "p", "response": "r"}])
    assert main(["score", "--model", str(vision_export), "--input", str(no_images)]) == 2
    assert "--image-column" in capsys.readouterr().err
    assert main(["compare", *args, "--a", "x", "--b", "y"]) == 2
    assert "--image PATH_OR_URL" in capsys.readouterr().err
    text_model = ["--model", str(models["qwen2"]), "--prompt", "p", "--a", "x", "--b", "y", "--image", image]
    assert main(["compare", *text_model]) == 2
    assert "text-only reward model" in capsys.readouterr().err
    assert not (tmp_path / "x").exists()


# Chat templates in the style of the real checkpoints' (Qwen2-VL adds a default system turn; LLaVA-1.5 puts
# the images first): the transform must follow whatever the checkpoint's template writes.
QWEN_STYLE_TEMPLATE = (
    "{% for message in messages %}{% if loop.first and message['role'] != 'system' %}<|im_start|>system\n"
    "You are a helpful assistant.<|im_end|>\n{% endif %}<|im_start|>{{ message['role'] }}\n"
    "{% if message['content'] is string %}{{ message['content'] }}<|im_end|>\n{% else %}"
    "{% for content in message['content'] %}{% if content['type'] == 'image' %}"
    "<|vision_start|><|image_pad|><|vision_end|>{% elif content['type'] == 'text' %}{{ content['text'] }}"
    "{% endif %}{% endfor %}<|im_end|>\n{% endif %}{% endfor %}"
    "{% if add_generation_prompt %}<|im_start|>assistant\n{% endif %}"
)
LLAVA_STYLE_TEMPLATE = (
    "{% for message in messages %}{% if message['role'] != 'system' %}{{ message['role'].upper() + ': ' }}"
    "{% endif %}{% for content in message['content'] | selectattr('type', 'equalto', 'image') %}"
    "{{ '<image>\\n' }}{% endfor %}{% for content in message['content'] | selectattr('type', 'equalto', 'text') %}"
    "{{ content['text'] + ' ' }}{% endfor %}{% endfor %}{% if add_generation_prompt %}{{ 'ASSISTANT:' }}{% endif %}"
)


def with_template(path, template, target):
    import shutil

    from transformers import AutoTokenizer

    shutil.copytree(path, target)
    tokenizer = AutoTokenizer.from_pretrained(target)
    tokenizer.chat_template = template
    tokenizer.save_pretrained(target)
    return target


@pytest.mark.parametrize(("family", "template"), [("qwen2_vl", QWEN_STYLE_TEMPLATE), ("llava", LLAVA_STYLE_TEMPLATE)])
def test_the_checkpoints_own_chat_template_places_the_images(models, shots, tmp_path, family, template):
    from rewardlab.data.transforms import VisionTransform

    path = with_template(models[family], template, tmp_path / "templated")
    scorer = scorer_for(path)
    transform = scorer.transform
    page, other = shots[1][0], shots[1][1]
    images = (page.images[0], other.images[0])
    encoded = transform.encode(page.prompt, page.chosen, images)
    # Collapse each image block to one placeholder: the ids then spell exactly the template's conversation.
    ids, collapsed = encoded.input_ids, []
    for i, t in enumerate(ids):
        if t != transform.image_token_id or i == 0 or ids[i - 1] != t:
            collapsed.append(t)
    user = [{"role": "user", "content": [{"type": "image"}, {"type": "image"}, {"type": "text", "text": page.prompt}]}]
    answer = [{"role": "assistant", "content": [{"type": "text", "text": page.chosen}]}]
    expected = scorer.tokenizer.apply_chat_template(user + answer, tokenize=False)
    assert scorer.tokenizer.decode(collapsed) == expected
    assert ids.count(transform.image_token_id) == sum(transform.image_token_counts(transform.pixel_inputs(images)))
    # data.chat_template=never keeps the family's built-in layout: the ids of the model without a template.
    kwargs = {f.name: getattr(transform, f.name) for f in dataclasses.fields(VisionTransform) if f.init}
    layout = VisionTransform(**{**kwargs, "chat_template": "never"}).encode(page.prompt, page.chosen, images)
    plain = scorer_for(models[family]).transform.encode(page.prompt, page.chosen, images)
    assert layout.input_ids == plain.input_ids != ids
    chosen, rejected = scorer.score_pairs([page])  # and the model scores through it
    assert all(map(math.isfinite, chosen + rejected))


def test_training_follows_the_chat_template_and_a_template_without_images_is_an_error(models, shots, tmp_path):
    import json

    from rewardlab.data.transforms import VisionTransform

    root, _ = shots
    path = with_template(models["qwen2_vl"], QWEN_STYLE_TEMPLATE, tmp_path / "templated")
    result = run_train(train_config(tmp_path, path, root / "train.jsonl"))
    losses = [
        json.loads(x)["loss"] for x in (result.run_dir / "metrics.jsonl").read_text().splitlines() if '"loss"' in x
    ]
    assert len(losses) == 6 and losses[-1] < losses[0]
    exported = Scorer.from_pretrained(str(result.model_dir))  # the template travels with the export
    ids = exported.transform.encode("p", "r", shots[1][0].images).input_ids
    assert "You are a helpful assistant." in exported.tokenizer.decode(ids)
    ignores_images = "{# image entries are dropped #}" + QWEN_STYLE_TEMPLATE.replace("<|image_pad|>", "")
    broken = scorer_for(with_template(models["qwen2_vl"], ignores_images, tmp_path / "broken")).transform
    assert isinstance(broken, VisionTransform)
    with pytest.raises(DataError, match="data.chat_template=never"):
        broken.encode("p", "r", shots[1][0].images)
    raises = "{{ raise_exception('images are not supported') if 'image' in messages | string }}" + QWEN_STYLE_TEMPLATE
    failing = scorer_for(with_template(models["qwen2_vl"], raises, tmp_path / "failing")).transform
    with pytest.raises(DataError, match="template failed on an image.*images are not supported"):
        failing.encode("p", "r", shots[1][0].images)


def test_a_template_kept_with_the_processor_is_used_and_saved_with_the_model(models, shots, tmp_path):
    import json
    import shutil

    from rewardlab.models.vision import ProcessorBundle

    path = shutil.copytree(models["qwen2_vl"], tmp_path / "proc-template")
    (path / "chat_template.json").write_text(json.dumps({"chat_template": QWEN_STYLE_TEMPLATE}))
    scorer = scorer_for(path)
    ids = scorer.transform.encode("p", "r", shots[1][0].images).input_ids
    assert "You are a helpful assistant." in scorer.tokenizer.decode(ids)
    bundle = ProcessorBundle(scorer.tokenizer, scorer.transform.image_processor)
    out = save_reward_model(scorer.model, bundle, tmp_path / "export", ExportMeta(max_length=256))
    (path / "chat_template.json").unlink()  # the export carries the template itself
    assert Scorer.from_pretrained(str(out)).transform.encode("p", "r", shots[1][0].images).input_ids == ids
