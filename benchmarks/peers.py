"""The peers' side of benchmarks/side_by_side.py: Captum and ferret, one example at a time.

Runs in the peers' environment (benchmarks/peer_env.sh), never imports attention-audit, and does what a
user of these libraries writes for the overlapping subset: Captum's LayerIntegratedGradients (m = 50,
Gauss-Legendre), Saliency, LayerGradientXActivation and FeatureAblation per token, then ferret's
AOPC comprehensiveness, AOPC sufficiency and τ-LOO evaluators on eight rankings (IG, saliency,
grad x input, leave-one-out, last-layer attention, mean attention, rollout, random).

Usage (called by side_by_side.py): .peer-venv/bin/python benchmarks/peers.py JOB.json RESULT.json
"""

from __future__ import annotations

import json
import sys
import time

import numpy as np
import torch
from captum.attr import FeatureAblation, LayerGradientXActivation, LayerIntegratedGradients, Saliency
from ferret.evaluators.faithfulness_measures import (
    AOPC_Comprehensiveness_Evaluation,
    AOPC_Sufficiency_Evaluation,
    TauLOO_Evaluation,
)
from ferret.explainers.explanation import Explanation
from transformers import AutoModelForSequenceClassification, AutoTokenizer


def rollout(attentions: tuple[torch.Tensor, ...]) -> np.ndarray:
    result = None
    for attention in attentions:
        mixed = 0.5 * attention[0].mean(0) + 0.5 * torch.eye(attention.shape[-1])
        mixed = mixed / mixed.sum(-1, keepdim=True)
        result = mixed if result is None else mixed @ result
    return result[0].numpy()


def main() -> None:
    job = json.load(open(sys.argv[1]))
    torch.manual_seed(0)
    torch.set_num_threads(job["threads"])
    tokenizer = AutoTokenizer.from_pretrained(job["model"])
    model = AutoModelForSequenceClassification.from_pretrained(job["model"], attn_implementation="eager").eval()
    embeddings = model.get_input_embeddings()

    def logits_of(input_ids, attention_mask, token_type_ids):
        return model(input_ids=input_ids, attention_mask=attention_mask, token_type_ids=token_type_ids).logits

    def logits_of_embeddings(inputs_embeds, attention_mask, token_type_ids):
        return model(inputs_embeds=inputs_embeds, attention_mask=attention_mask, token_type_ids=token_type_ids).logits

    def probability_of(input_ids, attention_mask, token_type_ids):
        return torch.softmax(logits_of(input_ids, attention_mask, token_type_ids), dim=-1)

    evaluators = {
        "comprehensiveness": AOPC_Comprehensiveness_Evaluation(model, tokenizer),
        "sufficiency": AOPC_Sufficiency_Evaluation(model, tokenizer),
        "taucorr_loo": TauLOO_Evaluation(model, tokenizer),
    }
    timings = {name: 0.0 for name in ("forward", "integrated_gradients", "saliency", "grad_x_input",
                                      "leave_one_out", *evaluators)}  # fmt: skip
    results = []
    started = time.perf_counter()
    for example in job["examples"]:
        clock = time.perf_counter()
        encoded = tokenizer(example["text"], return_tensors="pt")
        extra = (encoded["attention_mask"], encoded["token_type_ids"])
        with torch.no_grad():
            output = model(**encoded, output_attentions=True)
        target = int(output.logits.argmax(-1))
        timings["forward"] += time.perf_counter() - clock

        clock = time.perf_counter()
        ids = encoded["input_ids"]
        baseline = ids.clone()
        baseline[0, 1:-1] = tokenizer.pad_token_id  # the [PAD] baseline at content positions
        integrated = LayerIntegratedGradients(logits_of, embeddings).attribute(
            ids, baselines=baseline, target=target, n_steps=50, method="gausslegendre", additional_forward_args=extra
        )
        integrated = integrated.sum(-1)[0].detach().numpy()
        timings["integrated_gradients"] += time.perf_counter() - clock

        clock = time.perf_counter()
        gradient = Saliency(logits_of_embeddings).attribute(
            embeddings(ids).detach(), target=target, abs=False, additional_forward_args=extra
        )
        saliency = gradient[0].norm(dim=-1).detach().numpy()
        timings["saliency"] += time.perf_counter() - clock

        clock = time.perf_counter()
        times_input = LayerGradientXActivation(logits_of, embeddings).attribute(
            ids, target=target, additional_forward_args=extra
        )
        times_input = times_input.sum(-1)[0].detach().numpy()
        timings["grad_x_input"] += time.perf_counter() - clock

        clock = time.perf_counter()
        ablation = FeatureAblation(probability_of).attribute(
            ids, baselines=tokenizer.pad_token_id, target=target, additional_forward_args=extra,
            feature_mask=torch.arange(ids.shape[1])[None],
        )  # fmt: skip
        leave_one_out = ablation[0].detach().numpy()
        timings["leave_one_out"] += time.perf_counter() - clock

        attentions = output.attentions
        rankings = {
            "integrated_gradients": integrated,
            "saliency": saliency,
            "grad_x_input": times_input,
            "leave_one_out": leave_one_out,
            "attention_last": attentions[-1][0].mean(0)[0].numpy(),
            "attention_mean": torch.stack([a[0].mean(0)[0] for a in attentions]).mean(0).numpy(),
            "rollout": rollout(attentions),
            "random": np.random.default_rng(0).random(ids.shape[1]),
        }
        tokens = tokenizer.convert_ids_to_tokens(ids[0])
        scores = {}
        for ranking, values in rankings.items():
            explanation = Explanation(example["text"], tokens, np.asarray(values, dtype=float), ranking, target)
            for name, evaluator in evaluators.items():
                clock = time.perf_counter()
                scores[f"{ranking}:{name}"] = float(evaluator.compute_evaluation(explanation, target).score)
                timings[name] += time.perf_counter() - clock
        results.append({"id": example["id"], "target": target, "integrated_gradients": integrated.tolist(),
                        "scores": scores})  # fmt: skip
    total = time.perf_counter() - started
    checks = {}
    for example, result in zip(job["examples"][: job["checked"]], results, strict=False):
        encoded = tokenizer(example["text"], return_tensors="pt")
        tokens = tokenizer.convert_ids_to_tokens(encoded["input_ids"][0])
        with torch.no_grad():
            attention = model(**encoded, output_attentions=True).attentions[-1][0].mean(0)[0].numpy()
        # Last-layer attention is positive everywhere, so ferret's only_pos default keeps the whole top k
        # (its only_pos=False path fails on numpy 2).
        explanation = Explanation(example["text"], tokens, attention.astype(float), "attention_last", result["target"])
        for k in job["check_k"]:
            arguments = {"removal_args": {"remove_tokens": True, "based_on": "perc", "thresholds": [k]}}
            for name in ("comprehensiveness", "sufficiency"):
                outcome = evaluators[name].compute_evaluation(explanation, result["target"], **arguments)
                value = getattr(outcome, "score", outcome)
                checks[f"{example['id']}:{name}:{k}"] = None if value is None else float(value)
    json.dump({"seconds": total, "timings": timings, "results": results, "checks": checks}, open(sys.argv[2], "w"))


if __name__ == "__main__":
    main()
