"""Cost of attention flow per example as a function of sequence length (the basis of --flow-max-tokens).

Builds the residual attention of the default model on real texts cut to each length and times
``tasks.explain.flow.attention_flow`` (one max-flow per token over an (L+1)·T-node graph).

Usage:
    python benchmarks/flow_cost.py [--model PATH] [--lengths 16,32,64,96,128,192,256] [--repeats 3]
"""

from __future__ import annotations

import argparse
import time

from flows.environment import quiet_libraries

quiet_libraries()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", default="movie-snippets")
    parser.add_argument("--lengths", default="16,32,64,96,128,192,256")
    parser.add_argument("--repeats", type=int, default=3)
    args = parser.parse_args()

    import numpy as np
    import pandas as pd

    from tasks.config import ModelSpec
    from tasks.data.builtin import BUILTIN_CORPORA
    from tasks.data.encoding import encode_corpus
    from tasks.explain.attention import residual_attention
    from tasks.explain.flow import attention_flow
    from tasks.explain.passes import BatchContext
    from tasks.model.loading import load_model

    bundle = load_model(ModelSpec(name_or_path=args.model))
    long_text = " ".join(BUILTIN_CORPORA["movie-snippets"].read("test")["text"].head(40))
    print(f"{'tokens':>7} {'seconds/example':>16} {'edges':>9}")
    for length in (int(x) for x in args.lengths.split(",")):
        frame = pd.DataFrame({"example_id": ["x"], "text": [long_text], "label": [None], "metadata": [{}]})
        examples = encode_corpus(frame, bundle.tokenizer, bundle.labels, length)
        context = BatchContext(bundle, examples, need_gradients=False)
        residual = np.stack([residual_attention(a).numpy()[0] for a in context.model_pass.attentions]).astype(float)
        timings = []
        for _ in range(args.repeats):
            started = time.perf_counter()
            attention_flow(residual, 0)
            timings.append(time.perf_counter() - started)
        edges = int((np.rint(residual * 2**20) > 0).sum())
        print(f"{examples[0].length:7d} {min(timings):16.3f} {edges:9d}")


if __name__ == "__main__":
    main()
