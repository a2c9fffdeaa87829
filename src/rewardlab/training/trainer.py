"""RewardTrainer: a ``transformers.Trainer`` that trains a :class:`RewardModel` on pairs or ranked groups.

Everything a ``TrainingArguments`` knob does keeps working (DeepSpeed/FSDP, mixed precision, activation
checkpointing, rotation, resume, ``report_to``); this class only says how a batch becomes a loss, how
a checkpoint is written (a standard model directory, atomically) and read back, and which train metrics
(pairwise accuracy, mean margin) are logged next to the loss.
"""

from __future__ import annotations

import os
import shutil
import uuid
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch.utils.data import DataLoader, SequentialSampler
from transformers import Trainer
from transformers.trainer_pt_utils import BatchRebalanceSampler, LengthGroupedSampler
from transformers.trainer_utils import EvalPrediction, rotate_checkpoints

from rewardlab.config.schema import LossConfig
from rewardlab.data.dataset import TokenBudgetBatchSampler
from rewardlab.data.files import output_errors, swap_directory
from rewardlab.evaluation.metrics import preference_accuracy
from rewardlab.models.checkpoint import write_model_files
from rewardlab.models.export_meta import ExportMeta
from rewardlab.models.reward_model import RewardModel
from rewardlab.training.losses import LOSSES, LossTerms, bradley_terry_loss, centering_penalty
from rewardlab.training.weights import load_backbone_weights

# Batch keys the loss reads; every other key is a model input (ids, masks, image tensors, ...).
LOSS_INPUTS = (
    "margin",
    "ranks",
    "group_sizes",
    "irrelevant_pairs",
    "row_lengths",
    "item_weights",
    "attribute_targets",
)
# Train metrics summed on the device between two log lines: name → index in RewardTrainer._train_sums.
SUMS = {"accuracy": 0, "margin": 1, "pairs": 2, "irrelevant_accuracy": 3, "irrelevant_loss": 4, "irrelevant_pairs": 5,
        "attribute_squared_error": 6, "attribute_ratings": 7}  # fmt: skip


def pair_metrics(eval_pred: EvalPrediction) -> dict[str, float]:
    """``compute_metrics`` for pair predictions ``(n, 2)`` = (chosen, rejected) scores."""
    preds = np.asarray(eval_pred.predictions)
    stats = preference_accuracy(preds[:, 0], preds[:, 1])
    return {k: float(v) for k, v in stats.items()}


class SeededLengthGroupedSampler(LengthGroupedSampler):
    """Length-grouped order drawn from ``seed + epoch``: identical for any world size and after a resume
    (the Trainer calls ``set_epoch`` before it skips the batches already seen)."""

    def __init__(self, batch_size: int, *, lengths: list[int], seed: int):
        super().__init__(batch_size, lengths=lengths, generator=torch.Generator())
        self.seed = seed
        self.set_epoch(0)

    def set_epoch(self, epoch: int) -> None:
        self.generator.manual_seed(self.seed + epoch)


class OwnForward:
    """Calls a :class:`RewardModel`'s own ``forward``, skipping the autocast wrapper accelerate sets on the instance
    under mixed precision; submodules are called as usual (their hooks, e.g. DeepSpeed's, still run)."""

    def __init__(self, model: RewardModel):
        self.model = model

    @property
    def training(self) -> bool:
        return self.model.training

    def __call__(self, **inputs: Any) -> torch.Tensor:
        return type(self.model).forward(self.model, **inputs)


class RewardTrainer(Trainer):
    """Trainer for reward models.

    Args:
        loss_config: which loss, margins, centering.
        export_meta: the ``rewardlab.json`` written into every checkpoint (:class:`ExportMeta`).
        bootstrap: an ensemble's members weigh each pair or group by their own Poisson(1) draws.
        **kwargs: as for ``transformers.Trainer`` (``model`` must be a :class:`RewardModel`).
    """

    def __init__(self, *args: Any, loss_config: LossConfig, export_meta: ExportMeta,
                 max_tokens_per_batch: int | None = None, bootstrap: bool = False, **kwargs: Any):  # fmt: skip
        kwargs.setdefault("compute_metrics", pair_metrics)
        super().__init__(*args, **kwargs)
        self.max_tokens_per_batch = max_tokens_per_batch
        if not isinstance(self.model, RewardModel):
            raise TypeError(f"RewardTrainer needs a RewardModel, got {type(self.model).__name__}")
        self.loss_config = loss_config
        self.loss_fn = LOSSES[loss_config.name]
        self.export_meta = export_meta
        self._train_sums = torch.zeros(len(SUMS), dtype=torch.float64)
        self._staging_dir: str | None = None
        self.bootstrap = bootstrap
        self._micro, self._micro_step = 0, -1  # micro-batch within an optimizer step (bootstrap seeds)
        self._record_eval = False
        self._last_eval: tuple[int, Any] | None = None  # (global step, predictions) of the last evaluate()

    # -- evaluation --------------------------------------------------------------------------------------------
    def train(self, *args: Any, **kwargs: Any):
        self._last_eval = None  # a new run (a tune trial starts from a fresh model)
        return super().train(*args, **kwargs)

    def evaluate(self, eval_dataset=None, ignore_keys=None, metric_key_prefix: str = "eval"):
        self._record_eval = eval_dataset is None  # predictions on the trainer's own eval set are kept
        try:
            return super().evaluate(eval_dataset, ignore_keys, metric_key_prefix)
        finally:
            self._record_eval = False

    def evaluation_loop(self, *args: Any, **kwargs: Any):
        output = super().evaluation_loop(*args, **kwargs)
        if self._record_eval and output.predictions is not None:
            self._last_eval = (self.state.global_step, output.predictions)
        return output

    def eval_predictions(self) -> Any:
        """Predictions ``(n, 2)`` of the current model on the trainer's eval set: those of the last evaluation when
        it ran at this step on this model (an epoch-end eval at the last step), else a fresh prediction."""
        if self._last_eval is not None and self._last_eval[0] == self.state.global_step:
            return self._last_eval[1]
        return self.predict(self.eval_dataset).predictions

    # -- loss --------------------------------------------------------------------------------------------------
    def compute_loss(self, model, inputs, return_outputs=False, num_items_in_batch=None):
        model_inputs = {k: v for k, v in inputs.items() if k not in LOSS_INPUTS}
        members = self.model.members
        if members > 1:
            everything = model(**model_inputs, return_members=True)  # (rows, 1 + members): mean, then members
            scores = everything[:, 0]
        elif self.model.attributes:
            everything = model(**model_inputs, return_attributes=True)  # (rows, 1 + attributes): score, attributes
            scores = everything[:, 0]
        else:
            scores = model(**model_inputs)  # (rows,)
        outputs: dict[str, torch.Tensor] = {"scores": scores}
        if self.model.attributes:
            terms, loss = self._attribute_loss(scores, everything[:, 1:], inputs, model.training)
        else:
            terms = self.loss_fn(scores, inputs, self.loss_config, model.training)
            loss = terms.loss
        if members > 1 and model.training:
            # Each member learns from the batch under its own bootstrap weights; the mean is what is evaluated.
            weights = self._bootstrap_weights(inputs, members, scores.device)
            losses = [self.loss_fn(everything[:, k + 1], inputs if weights is None else {**inputs, "item_weights":
                                   weights[k]}, self.loss_config, True).loss for k in range(members)]  # fmt: skip
            loss = torch.stack(losses).mean()
        if terms.chosen is not None:
            outputs.update(chosen=terms.chosen, rejected=terms.rejected)
            if model.training:
                self._accumulate(terms.chosen - terms.rejected, first=SUMS["accuracy"])
        if "irrelevant_pairs" in inputs:
            # Irrelevant-query augmentation: the chosen text with its own image beats it with another image.
            idx = inputs["irrelevant_pairs"]  # (m, 2)
            own, other = scores[idx[:, 0]], scores[idx[:, 1]]
            irrelevant = bradley_terry_loss(own, other)
            loss = loss + self.loss_config.irrelevant_loss_weight * irrelevant
            if model.training:
                self._accumulate(own - other, first=SUMS["irrelevant_accuracy"], loss=irrelevant)
        if self.loss_config.center_coefficient:
            centered = everything[:, 1:].reshape(-1) if members > 1 and model.training else scores
            loss = loss + centering_penalty(centered, self.loss_config.center_coefficient)
        return (loss, outputs) if return_outputs else loss

    def _attribute_loss(self, scores: torch.Tensor, attributes: torch.Tensor, inputs: dict[str, Any],
                        training: bool) -> tuple[LossTerms, torch.Tensor]:  # fmt: skip
        """Attribute heads: the preference loss on the batch's pairs or groups of two or more (a rated response
        alone is a group of one, with no preference), plus ``attribute_weight`` × the mean squared error of the
        attributes on the rows that have ratings (``attribute_targets`` (rows, K), NaN where unknown)."""
        loss = scores.new_zeros(())
        terms = LossTerms(loss)
        if "group_sizes" in inputs:
            sizes = inputs["group_sizes"]
            ranked = sizes > 1
            n = int(ranked.sum())
            if n:  # the mean over the ranked groups only
                weights = ranked.to(scores.dtype) * (sizes.numel() / n)
                terms = self.loss_fn(scores, {**inputs, "item_weights": weights}, self.loss_config, training)
        elif inputs["margin"].numel():
            terms = self.loss_fn(scores, inputs, self.loss_config, training)
        loss = terms.loss
        targets = inputs.get("attribute_targets")
        if targets is not None:
            known = ~torch.isnan(targets)
            squared = (attributes - torch.nan_to_num(targets)).square() * known
            count = known.sum()
            mse = squared.sum() / count.clamp(min=1)
            loss = loss + self.loss_config.attribute_weight * mse
            if training:
                self._train_sums = self._train_sums.to(scores.device)
                first = SUMS["attribute_squared_error"]
                self._train_sums[first : first + 2] += torch.stack([squared.detach().sum().double(),
                                                                    count.double()])  # fmt: skip
        return terms, loss

    def _bootstrap_weights(self, inputs: dict[str, Any], members: int, device: torch.device) -> torch.Tensor | None:
        """``(members, items)`` Poisson(1) weights of this micro-batch's pairs or groups (online bagging: a fresh draw
        each time an item is seen), seeded by the run's seed, the step and the micro-batch, so a resumed run draws
        the same; None when the ensemble does not bootstrap."""
        if not self.bootstrap:
            return None
        items = inputs["group_sizes"].numel() if "group_sizes" in inputs else inputs["margin"].shape[0]
        step = self.state.global_step
        self._micro = self._micro + 1 if self._micro_step == step else 0
        self._micro_step = step
        generator = torch.Generator().manual_seed(self.args.seed * 1_000_003 + step * 1_009 + self._micro)
        return torch.poisson(torch.ones(members, items), generator=generator).to(device)

    def _accumulate(self, diff: torch.Tensor, *, first: int, loss: torch.Tensor | None = None) -> None:
        """Add (accuracy sum, margin or loss sum, count) of ``diff`` (n,) into the sums, on the device."""
        diff = diff.detach().double()
        acc = (diff > 0).double() + 0.5 * (diff == 0).double()
        n = diff.new_tensor(float(diff.numel()))
        second = diff.sum() if loss is None else loss.detach().double() * n
        self._train_sums = self._train_sums.to(diff.device)
        self._train_sums[first : first + 3] += torch.stack([acc.sum(), second, n])

    def prediction_step(self, model, inputs, prediction_loss_only, ignore_keys=None):
        inputs = self._prepare_inputs(inputs)
        # Evaluate in the model's own dtype, not through the mixed-precision autocast that accelerate wraps around
        # forward: bf16-rounded scores tie and shift, and the saved normalization and eval accuracy would then
        # differ from `rewardlab eval` on the export.
        plain = OwnForward(self.accelerator.unwrap_model(model))
        with torch.no_grad():
            loss, outputs = self.compute_loss(plain, inputs, return_outputs=True)
        if prediction_loss_only or "chosen" not in outputs:
            return loss.detach(), None, None
        logits = torch.stack([outputs["chosen"], outputs["rejected"]], dim=1)  # (b, 2)
        # Labels are unused, but the Trainer only calls compute_metrics when some are present.
        return loss.detach(), logits, torch.zeros(logits.shape[0], device=logits.device)

    def log(self, logs: dict[str, float], start_time: float | None = None) -> None:
        if "loss" in logs:
            sums = self._train_sums.to(self.args.device)
            if self.args.world_size > 1:  # every process logs at the same step, so this collective is safe
                sums = self.accelerator.reduce(sums, reduction="sum")
            for name, count in (("accuracy", "pairs"), ("irrelevant_accuracy", "irrelevant_pairs")):
                n = sums[SUMS[count]]
                if n > 0:
                    logs[name] = round(float(sums[SUMS[name]] / n), 4)
                    second = "margin" if name == "accuracy" else "irrelevant_loss"
                    logs[second] = round(float(sums[SUMS[second]] / n), 4)
            if sums[SUMS["attribute_ratings"]] > 0:
                logs["attribute_mse"] = round(float(sums[SUMS["attribute_squared_error"]] /
                                                    sums[SUMS["attribute_ratings"]]), 5)  # fmt: skip
            self._train_sums.zero_()
        super().log(logs, start_time)

    # -- sampling ----------------------------------------------------------------------------------------------
    def _get_train_sampler(self, train_dataset=None):
        dataset = train_dataset if train_dataset is not None else self.train_dataset
        lengths = getattr(dataset, "lengths", None)
        if lengths is None:
            return super()._get_train_sampler(train_dataset)
        # The feature lengths are known, not re-derived (transformers would look for an `input_ids` key our pair
        # and group items lack). Grouping by the *global* batch makes the order the same for any number of processes.
        accumulation = self.args.gradient_accumulation_steps
        global_batch = self.args.train_batch_size * accumulation * self.args.world_size
        if self.args.train_sampling_strategy == "group_by_length":
            # Batches of similar length carry less padding.
            return SeededLengthGroupedSampler(global_batch, lengths=lengths, seed=self.args.seed)
        if self.args.train_sampling_strategy == "batch_rebalance":
            # Rank-aware: the parent's dataloader passes it on as the batch sampler.
            return BatchRebalanceSampler(
                lengths=lengths,
                effective_batch_size=global_batch,
                dp_size=self.args.world_size,
                grad_accum=accumulation,
                seed=self.args.seed,
                rank=self.args.process_index,
                drop_last=self.args.dataloader_drop_last,
            )
        return super()._get_train_sampler(train_dataset)

    def get_train_dataloader(self) -> DataLoader:
        if self.max_tokens_per_batch is None:
            return super().get_train_dataloader()
        # Batches filled up to a token budget instead of a fixed number of pairs (data.max_tokens_per_batch).
        sampler = TokenBudgetBatchSampler(self.train_dataset.tokens, self.max_tokens_per_batch, seed=self.args.seed)
        loader = DataLoader(
            self.train_dataset,
            batch_sampler=sampler,
            collate_fn=self.data_collator,
            num_workers=self.args.dataloader_num_workers,
            pin_memory=self.args.dataloader_pin_memory,
        )
        return self.accelerator.prepare(loader)

    def _get_eval_sampler(self, eval_dataset):
        # Eval keeps dataset order (predictions line up with records): length grouping is a training trick.
        # With several processes, None lets accelerate shard the dataset in order.
        return SequentialSampler(eval_dataset) if self.args.world_size <= 1 else None

    # -- checkpoints -------------------------------------------------------------------------------------------
    def _save(self, output_dir: str | None = None, state_dict: dict | None = None) -> None:
        output_dir = output_dir or self.args.output_dir
        if not self.args.should_save:
            return
        os.makedirs(output_dir, exist_ok=True)
        write_model_files(
            self.model,
            self.processing_class,
            Path(output_dir),
            self.export_meta,
            merge_lora=False,
            state_dict=state_dict,
        )
        torch.save(self.args, os.path.join(output_dir, "training_args.bin"))

    def _get_output_dir(self, trial) -> str:
        return self._staging_dir or super()._get_output_dir(trial)

    def _save_checkpoint(self, model, trial) -> None:
        """Write ``checkpoint-N`` into a staging directory, then rename it into place: a crash mid-save never
        leaves a checkpoint that looks complete (resume and evaluation would pick it up)."""
        run_dir = super()._get_output_dir(trial)
        name = f"checkpoint-{self.state.global_step}"
        self._staging_dir = os.path.join(run_dir, ".staging")
        try:
            with output_errors(os.path.join(run_dir, name)):
                super()._save_checkpoint(model, trial)
        except BaseException:
            shutil.rmtree(self._staging_dir, ignore_errors=True)
            raise
        finally:
            self._staging_dir = None
        self.accelerator.wait_for_everyone()
        if self.args.should_save:
            # Renamed beside its target, then swapped in (data.files): a crash never loses both checkpoints.
            ready = Path(run_dir, f".{name}.tmp-{uuid.uuid4().hex[:8]}")
            os.rename(os.path.join(run_dir, ".staging", name), ready)
            swap_directory(ready, Path(run_dir, name))
            shutil.rmtree(os.path.join(run_dir, ".staging"), ignore_errors=True)
            best = self.state.best_model_checkpoint
            if best and ".staging" in best:
                self.state.best_model_checkpoint = best.replace(os.sep + ".staging", "")
            rotate_checkpoints(
                output_dir=run_dir,
                save_total_limit=self.args.save_total_limit,
                best_model_checkpoint=self.state.best_model_checkpoint,
                use_mtime=True,
            )
        self.accelerator.wait_for_everyone()

    def _load_from_checkpoint(self, resume_from_checkpoint: str, model=None) -> None:
        self._last_eval = None  # other weights now
        load_backbone_weights((model or self.model).backbone, resume_from_checkpoint)

    def _load_best_model(self) -> None:
        self._last_eval = None
        load_backbone_weights(self.model.backbone, self.state.best_model_checkpoint)
