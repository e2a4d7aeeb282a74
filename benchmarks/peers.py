"""The peers' side of benchmarks/side_by_side.py: Captum and ferret, one example at a time.

Runs in the peers' environment (benchmarks/peer_env.sh) and never imports attention-audit. Two modes:

``exact``: the audit's quantities, configured through the peers' own options.
    Captum's ``Saliency`` (on the word embeddings), ``LayerGradientXActivation`` and
    ``LayerIntegratedGradients`` (the ``[PAD]`` baseline at content positions, the audit's ``m`` and rule,
    ``return_convergence_delta`` for the completeness error); leave-one-out as Captum's
    ``FeatureAblation`` over the content tokens whose forward function deletes the ablated ids (the audit's
    removal; all of an example's ablations in one evaluation). Attention (last layer, mean, rollout) from
    the model's attentions and the random ranking with the audit's seeding, as a user writes them. ferret's
    ``AOPC_Comprehensiveness_Evaluation`` and ``AOPC_Sufficiency_Evaluation`` at the audit's rationale
    sizes (``based_on="k"``, ``max(1, ⌊k·n⌋)`` tokens, one call per size because ferret drops a repeated
    rationale from its mean) and ``TauLOO_Evaluation``. ferret removes tokens by decoding the kept ids and
    re-tokenising the text; it is given a whitespace tokenizer over the model's own vocabulary, so that
    decoding and re-tokenising give back exactly the kept ids (the audit deletes ids). It is given the
    audit's ranking as positive ranks (ties to the earlier token), since ferret keeps only positively
    scored tokens by default (its ``only_pos=False`` path fails on numpy 2) and breaks ties the other way;
    τ-LOO gets the scores themselves.
``defaults``: what a user of these libraries writes without configuring them.
    The same Captum attributions, but leave-one-out as ``FeatureAblation`` replacing each position
    (special tokens included) with ``[PAD]``, one position per evaluation; ferret's three evaluators at
    their defaults (rationales of 10 %, 20 %, ..., 100 % of the tokens, positive scores only, text-level
    removal with the model's tokenizer) on every ranking.

Usage (called by side_by_side.py): .peer-venv/bin/python benchmarks/peers.py JOB.json RESULT.json
"""

from __future__ import annotations

import hashlib
import json
import math
import sys
import time
from collections import defaultdict
from typing import Any

import numpy as np
import torch
from captum.attr import FeatureAblation, LayerGradientXActivation, LayerIntegratedGradients, Saliency
from ferret.evaluators.faithfulness_measures import (
    AOPC_Comprehensiveness_Evaluation,
    AOPC_Sufficiency_Evaluation,
    TauLOO_Evaluation,
)
from ferret.explainers.explanation import Explanation
from likeforlike import PassCounter
from tokenizers import Tokenizer, models, pre_tokenizers, processors
from transformers import AutoModelForSequenceClassification, AutoTokenizer, PreTrainedTokenizerFast

GRADIENT_METHODS = ("saliency", "grad_x_input", "integrated_gradients")


def rollout(attentions: tuple[torch.Tensor, ...]) -> np.ndarray:
    """Row ``c = 0`` of ``Â[L] ... Â[1]``, ``Â = 0.5·mean_h A + 0.5·I`` row-normalised (Abnar & Zuidema 2020)."""
    result = None
    for attention in attentions:
        mixed = 0.5 * attention[0].mean(0) + 0.5 * torch.eye(attention.shape[-1])
        mixed = mixed / mixed.sum(-1, keepdim=True)
        result = mixed if result is None else mixed @ result
    assert result is not None
    return result[0].numpy()


def random_scores(example_id: str, content: np.ndarray, seed: int, draw: int) -> np.ndarray:
    """The audit's random ranking: ``Uniform(0, 1)`` on content tokens from a generator seeded by the example."""
    key = int.from_bytes(hashlib.sha256(example_id.encode()).digest()[:8], "little")
    return np.where(content, np.random.default_rng([seed, draw, key]).random(content.shape[0]), 0.0)


def rationale_size(n: int, k: float) -> int:
    """The audit's rationale size ``max(1, ⌊k·n⌋)``."""
    return max(1, math.floor(k * n + 1e-9)) if n else 0


def id_exact_tokenizer(tokenizer: Any) -> PreTrainedTokenizerFast:
    """A whitespace tokenizer over ``tokenizer``'s vocabulary: ``decode`` then ``encode`` gives back the ids."""
    core = Tokenizer(models.WordLevel(tokenizer.get_vocab(), unk_token=tokenizer.unk_token))
    core.pre_tokenizer = pre_tokenizers.WhitespaceSplit()  # type: ignore[assignment]
    cls, sep = tokenizer.cls_token, tokenizer.sep_token
    core.post_processor = processors.TemplateProcessing(  # type: ignore[assignment]
        single=f"{cls} $A {sep}", special_tokens=[(cls, tokenizer.cls_token_id), (sep, tokenizer.sep_token_id)]
    )
    return PreTrainedTokenizerFast(
        tokenizer_object=core,
        unk_token=tokenizer.unk_token,
        cls_token=cls,
        sep_token=sep,
        pad_token=tokenizer.pad_token,
        mask_token=tokenizer.mask_token,
        model_max_length=tokenizer.model_max_length,
        clean_up_tokenization_spaces=False,
    )


def main() -> None:
    job = json.load(open(sys.argv[1]))
    exact = job["mode"] == "exact"
    torch.manual_seed(0)
    torch.set_num_threads(job["threads"])
    counter = PassCounter()
    # ferret truncates at the tokenizer's model_max_length: the audit's max length, on both sides
    tokenizer = AutoTokenizer.from_pretrained(job["model"], model_max_length=job["max_length"])
    model = AutoModelForSequenceClassification.from_pretrained(job["model"], attn_implementation="eager").eval()
    counter.attach(model)
    embeddings = model.get_input_embeddings()
    methods = job["methods"]
    ferret_tokenizer = id_exact_tokenizer(tokenizer) if exact else tokenizer
    evaluators = {
        "comprehensiveness": AOPC_Comprehensiveness_Evaluation(model, ferret_tokenizer),
        "sufficiency": AOPC_Sufficiency_Evaluation(model, ferret_tokenizer),
        "taucorr_loo": TauLOO_Evaluation(model, ferret_tokenizer),
    }

    def logits_of(input_ids, attention_mask, token_type_ids):
        return model(input_ids=input_ids, attention_mask=attention_mask, token_type_ids=token_type_ids).logits

    def logits_of_embeddings(inputs_embeds, attention_mask, token_type_ids):
        return model(inputs_embeds=inputs_embeds, attention_mask=attention_mask, token_type_ids=token_type_ids).logits

    def probability_of(input_ids, attention_mask, token_type_ids):
        return torch.softmax(logits_of(input_ids, attention_mask, token_type_ids), dim=-1)

    def probability_without(content: torch.Tensor) -> torch.Tensor:
        """Class probabilities of ``[CLS] content [SEP]`` with the ids FeatureAblation set to -1 deleted."""
        rows = [
            [tokenizer.cls_token_id, *[i for i in row.tolist() if i >= 0], tokenizer.sep_token_id] for row in content
        ]
        width = max(len(row) for row in rows)
        ids = torch.tensor([row + [tokenizer.pad_token_id] * (width - len(row)) for row in rows])
        mask = torch.tensor([[1] * len(row) + [0] * (width - len(row)) for row in rows])
        return torch.softmax(model(input_ids=ids, attention_mask=mask, token_type_ids=torch.zeros_like(ids)).logits, -1)

    timings: dict[str, float] = defaultdict(float)
    predictions, scores, metrics = {}, {}, []
    for example in job["examples"]:
        clock = time.perf_counter()
        encoded = tokenizer(example["text"], return_tensors="pt", truncation=True)
        ids = encoded["input_ids"]
        extra = (encoded["attention_mask"], encoded["token_type_ids"])
        with torch.no_grad():
            output = model(**encoded, output_attentions=True)
        probabilities = torch.softmax(output.logits.double(), -1)[0]
        target = int(probabilities.argmax())
        predictions[example["id"]] = {"target": target, "probability": float(probabilities[target])}
        timings["model_pass"] += time.perf_counter() - clock
        content = np.ones(ids.shape[1], dtype=bool)
        content[[0, -1]] = False
        rankings: dict[tuple[str, int], np.ndarray] = {}

        clock = time.perf_counter()
        attentions = output.attentions
        if "attention_last" in methods:
            rankings["attention_last", 0] = attentions[-1][0].mean(0)[0].numpy()
        if "attention_mean" in methods:
            rankings["attention_mean", 0] = torch.stack([a[0].mean(0)[0] for a in attentions]).mean(0).numpy()
        if "rollout" in methods:
            rankings["rollout", 0] = rollout(attentions)
        if "random" in methods:
            for draw in range(job["random_draws"]):
                rankings["random", draw] = random_scores(example["id"], content, job["seed"], draw)
        timings["attention_and_random"] += time.perf_counter() - clock

        if "saliency" in methods:
            clock = time.perf_counter()
            gradient = Saliency(logits_of_embeddings).attribute(
                embeddings(ids).detach(), target=target, abs=False, additional_forward_args=extra
            )
            rankings["saliency", 0] = gradient[0].norm(dim=-1).detach().numpy()
            timings["saliency"] += time.perf_counter() - clock

        if "grad_x_input" in methods:
            clock = time.perf_counter()
            times_input = LayerGradientXActivation(logits_of, embeddings).attribute(
                ids, target=target, additional_forward_args=extra
            )
            rankings["grad_x_input", 0] = times_input.sum(-1)[0].detach().numpy()
            timings["grad_x_input"] += time.perf_counter() - clock

        if "integrated_gradients" in methods:
            clock = time.perf_counter()
            baseline = ids.clone()
            baseline[0, 1:-1] = tokenizer.pad_token_id  # the [PAD] baseline at content positions
            for steps in job["ig_steps"]:  # the audit's schedule: the next size only while completeness fails
                integrated, delta = LayerIntegratedGradients(logits_of, embeddings).attribute(
                    ids, baselines=baseline, target=target, n_steps=steps,
                    method={"gausslegendre": "gausslegendre", "riemann_right": "riemann_right"}[job["ig_rule"]],
                    additional_forward_args=extra, return_convergence_delta=True,
                )  # fmt: skip
                error = float(delta[0])
                gap = float(integrated.sum()) - error
                if abs(error) <= max(0.05 * abs(gap), 0.01):
                    break
            rankings["integrated_gradients", 0] = integrated.sum(-1)[0].detach().double().numpy()
            for name, value in (("completeness_error", error), ("logit_gap", gap), ("ig_steps", steps)):
                metrics.append([example["id"], "integrated_gradients", 0, name, None, float(value)])
            timings["integrated_gradients"] += time.perf_counter() - clock

        if "leave_one_out" in methods:
            clock = time.perf_counter()
            if exact:
                inside = ids[:, 1:-1]
                ablation = FeatureAblation(probability_without).attribute(
                    inside, baselines=-1, target=target, perturbations_per_eval=inside.shape[1]
                )
                rankings["leave_one_out", 0] = np.concatenate([[0.0], ablation[0].double().numpy(), [0.0]])
            else:
                ablation = FeatureAblation(probability_of).attribute(
                    ids, baselines=tokenizer.pad_token_id, target=target, additional_forward_args=extra,
                    feature_mask=torch.arange(ids.shape[1])[None],
                )  # fmt: skip
                rankings["leave_one_out", 0] = ablation[0].detach().double().numpy()
            timings["leave_one_out"] += time.perf_counter() - clock

        tokens = tokenizer.convert_ids_to_tokens(ids[0])
        text = example["text"]
        n = int(content.sum())
        if exact:
            text = ferret_tokenizer.decode(ids[0, 1:-1].tolist())
            if ferret_tokenizer(text)["input_ids"] != ids[0].tolist():
                raise SystemExit(f"the whitespace tokenizer does not give back the ids of {example['id']}")
            sizes = {k: rationale_size(n, k) for k in job["k_fractions"]}
        for (method, draw), values in rankings.items():
            scores[f"{method}:{draw}:{example['id']}"] = [float(v) for v in values]
            clock = time.perf_counter()
            if not exact:
                explanation = Explanation(text, tokens, np.asarray(values, dtype=float), method, target)
                for name, evaluator in evaluators.items():
                    value = evaluator.compute_evaluation(explanation, target).score
                    metrics.append([example["id"], method, draw, name, None, float(value)])
                timings["ferret"] += time.perf_counter() - clock
                continue
            inside = np.asarray(values[1:-1], dtype=float)
            order = np.argsort(-inside, kind="stable")  # the audit's ranking: ties to the earlier token
            ranks = np.zeros(len(values))
            ranks[1 + order] = np.arange(n, 0, -1)
            ranked = Explanation(text, tokens, ranks, method, target)
            by_size: dict[tuple[str, int], float] = {}
            for name in ("comprehensiveness", "sufficiency"):
                for size in sorted(set(sizes.values())):
                    arguments = {"removal_args": {"remove_tokens": True, "based_on": "k", "thresholds": [size]}}
                    outcome = evaluators[name].compute_evaluation(ranked, target, **arguments)
                    by_size[name, size] = float(outcome.score)
                per_k = [by_size[name, sizes[k]] for k in job["k_fractions"]]
                for k, value in zip(job["k_fractions"], per_k, strict=True):
                    metrics.append([example["id"], method, draw, name, k, value])
                metrics.append([example["id"], method, draw, f"aopc_{name}", None, float(np.mean(per_k))])
            explanation = Explanation(text, tokens, np.asarray(values, dtype=float), method, target)
            value = evaluators["taucorr_loo"].compute_evaluation(explanation, target).score
            metrics.append([example["id"], method, draw, "taucorr_loo", None, float(value)])
            timings["ferret"] += time.perf_counter() - clock
    result = {"timings": timings, "predictions": predictions, "scores": scores, "metrics": metrics,
              "passes": counter.as_dict()}  # fmt: skip
    json.dump(result, open(sys.argv[2], "w"))


if __name__ == "__main__":
    main()
