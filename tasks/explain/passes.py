"""One batch's model passes, computed once and shared by every method and metric.

A ``BatchContext`` holds a right-padded batch and computes, lazily and at most once:

- the **model pass**: one forward pass that gives the prediction ``ŷ`` and every layer's attention and,
  when a method needs gradients, one backward pass of ``z_ŷ`` that gives the gradient with respect to
  the input embeddings (saliency, grad x input) and to the attention probabilities;
- **perturbed outputs** ``p_ŷ(x')`` for inputs with tokens removed (leave-one-out, comprehensiveness,
  sufficiency), each distinct perturbed input computed once however many methods, rationale sizes and
  random draws ask for it, in length-sorted forward passes under a token budget;
- **embedding gradients** for arbitrary embedding inputs (integrated gradients' path), chunked under the
  same budget;
- **intervened outputs**: ``p(x)`` with the attention probabilities edited inside the forward pass. An
  edit of layer ``l`` leaves the layers below unchanged, so these runs start from the hidden states
  entering layer ``l`` (kept from the model pass) and run only the top of the network.

Every model call is counted (rows and tokens, forward and backward) so the audit can report what it
cost. Tokens of a partial pass are weighted by the share of layers run: a token through the top third
of the network counts one third.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from functools import cached_property

import numpy as np
import torch

from tasks.config import ExecutionSettings, RemovalOperator
from tasks.errors import AuditError
from tasks.explain.batching import chunks_under_budget, right_pad
from tasks.model.attention_hook import AttentionEdit
from tasks.model.bundle import ModelBundle
from tasks.records import EncodedExample, Prediction, TokenScores


@dataclass
class PassCounter:
    """Model work done so far: rows (sequences) and tokens, forward and backward."""

    forward_rows: int = 0
    forward_tokens: int = 0
    backward_rows: int = 0
    backward_tokens: int = 0

    def snapshot(self) -> PassCounter:
        """A copy of the current counts."""
        return PassCounter(self.forward_rows, self.forward_tokens, self.backward_rows, self.backward_tokens)

    def minus(self, earlier: PassCounter) -> PassCounter:
        """Work done since ``earlier``."""
        return PassCounter(
            self.forward_rows - earlier.forward_rows,
            self.forward_tokens - earlier.forward_tokens,
            self.backward_rows - earlier.backward_rows,
            self.backward_tokens - earlier.backward_tokens,
        )


@dataclass(frozen=True, eq=False)
class ModelPass:
    """Outputs of the shared forward (and, when needed, backward) pass of the unperturbed batch.

    Shapes: ``B`` rows, ``W`` padded width, ``L`` layers, ``H`` heads, ``D`` embedding size.

    Attributes:
        logits: ``[B, C]``.
        attentions: ``L`` tensors ``[B, H, W, W]``; rows are queries, columns keys.
        embeddings: Input word embeddings ``e``, ``[B, W, D]`` (None without gradients).
        embedding_grads: ``∂z_ŷ/∂e``, ``[B, W, D]`` (None without gradients).
        attention_grads: ``∂z_ŷ/∂A[l]``, ``L`` tensors ``[B, H, W, W]`` (None unless asked for).
        hidden_states: ``L + 1`` tensors ``[B, W, D]``: the embedding output (entering layer 0), then
            each layer's output; ``hidden_states[l]`` enters layer ``l``.
    """

    logits: torch.Tensor
    attentions: tuple[torch.Tensor, ...]
    hidden_states: tuple[torch.Tensor, ...] = ()
    embeddings: torch.Tensor | None = None
    embedding_grads: torch.Tensor | None = None
    attention_grads: tuple[torch.Tensor, ...] | None = None


@dataclass
class BatchContext:
    """A batch of encoded examples and the passes computed on it.

    Args:
        bundle: The model under audit.
        examples: The batch, any lengths (it is right-padded here).
        token_budget: Most tokens per forward chunk of perturbed inputs or intervened runs.
        gradient_token_budget: Most tokens per forward-and-backward chunk (integrated gradients).
        removal: How ``perturbed_probabilities`` removes a token: ``delete`` the id, or replace it with
            ``mask`` (``[MASK]``) or ``pad`` (``[PAD]``).
        need_gradients: Run the backward pass of ``z_ŷ`` with the model pass.
        need_attention_grads: Also return the gradient with respect to the attention probabilities.
        target_classes: The class each example's explanations explain; None explains the predicted class
            ``ŷ`` (the default everywhere but the sanity checks, which keep the original model's ``ŷ``).
    """

    bundle: ModelBundle
    examples: Sequence[EncodedExample]
    token_budget: int = ExecutionSettings.model_fields["token_budget"].default
    gradient_token_budget: int = ExecutionSettings.model_fields["gradient_token_budget"].default
    removal: RemovalOperator = "delete"
    need_gradients: bool = True
    need_attention_grads: bool = False
    target_classes: Sequence[int] | None = None
    counter: PassCounter = field(default_factory=PassCounter)

    def __post_init__(self) -> None:
        if not self.examples:
            raise ValueError("a batch needs at least one example")
        self.lengths = np.array([example.length for example in self.examples])
        padded = right_pad([(e.input_ids, e.token_type_ids) for e in self.examples], self.bundle.tokenizer.pad_token_id)
        device = self.bundle.device
        self.input_ids, self.token_type_ids, self.attention_mask = (tensor.to(device) for tensor in padded)
        self._perturbed: dict[tuple[int, bytes], float] = {}

    # --- the shared model pass ----------------------------------------------------------------

    @cached_property
    def model_pass(self) -> ModelPass:
        """The forward pass (and backward pass of ``z_ŷ`` when gradients are needed), computed once.

        The base model runs with attentions and hidden states; the adapter's head turns the final state
        at the classification position into logits (for every family, so a decoder's ``c`` is the last
        real token even when the input is given as embeddings).
        """
        model, adapter = self.bundle.model, self.bundle.adapter
        base = adapter.base_model(model)
        tokens = int(self.lengths.sum())
        self.counter.forward_rows += len(self.examples)
        self.counter.forward_tokens += tokens
        outputs = {"attention_mask": self.attention_mask, **self._token_types()}
        if not self.need_gradients:
            with torch.no_grad():  # not inference_mode: adversarial attention differentiates through hidden_states
                output = base(input_ids=self.input_ids, **outputs, output_attentions=True, output_hidden_states=True)
                logits = adapter.head_logits(model, output.last_hidden_state, self.classification_positions)
            return ModelPass(
                logits=logits.float(),
                attentions=tuple(a.float() for a in output.attentions),
                hidden_states=tuple(output.hidden_states),
            )
        embeddings = adapter.word_embeddings(model)(self.input_ids).detach().requires_grad_(True)
        with torch.enable_grad():
            output = base(inputs_embeds=embeddings, **outputs, output_attentions=True, output_hidden_states=True)
            logits = adapter.head_logits(model, output.last_hidden_state, self.classification_positions)
            chosen = (
                logits.argmax(dim=1, keepdim=True)
                if self.target_classes is None
                else torch.as_tensor(list(self.target_classes), device=logits.device)[:, None]
            )
            target_logit = logits.gather(1, chosen).sum()
            wrt = [embeddings, *output.attentions] if self.need_attention_grads else [embeddings]
            grads = torch.autograd.grad(target_logit, wrt)
        self.counter.backward_rows += len(self.examples)
        self.counter.backward_tokens += tokens
        return ModelPass(
            logits=logits.detach().float(),
            attentions=tuple(a.detach().float() for a in output.attentions),
            hidden_states=tuple(h.detach() for h in output.hidden_states),
            embeddings=embeddings.detach(),
            embedding_grads=grads[0].float(),
            attention_grads=tuple(g.float() for g in grads[1:]) if self.need_attention_grads else None,
        )

    @cached_property
    def targets(self) -> torch.Tensor:
        """The class every method explains per row, ``[B]``: the predicted class ``ŷ`` unless given."""
        if self.target_classes is not None:
            return torch.as_tensor(list(self.target_classes), dtype=torch.long, device=self.input_ids.device)
        return self.model_pass.logits.argmax(dim=1)

    @cached_property
    def target_probabilities(self) -> np.ndarray:
        """``p_ŷ(x)`` of every row, ``[B]``."""
        probabilities = torch.softmax(self.model_pass.logits, dim=1)
        return probabilities.gather(1, self.targets[:, None])[:, 0].cpu().double().numpy()

    @cached_property
    def classification_positions(self) -> torch.Tensor:
        """The position ``c`` whose final state the head reads, per row, ``[B]``."""
        return self.bundle.adapter.classification_positions(self.attention_mask)

    def predictions(self) -> tuple[Prediction, ...]:
        """The model's unperturbed output per example."""
        logits = self.model_pass.logits.cpu().double()
        probabilities = torch.softmax(logits, dim=1).numpy()
        return tuple(
            Prediction(example_id=example.example_id, probabilities=probabilities[row], logits=logits[row].numpy())
            for row, example in enumerate(self.examples)
        )

    # --- helpers for methods ------------------------------------------------------------------

    def records(
        self,
        method: str,
        scores: torch.Tensor | Sequence[np.ndarray],
        *,
        draw: int = 0,
        diagnostics: Sequence[dict[str, float]] | None = None,
    ) -> list[TokenScores]:
        """Wrap per-row scores (a padded ``[B, W]`` tensor or one array per example) as records."""
        out = []
        for row, example in enumerate(self.examples):
            values = scores[row]
            if isinstance(values, torch.Tensor):
                values = values.detach().cpu().double().numpy()
            values = np.asarray(values, dtype=np.float64)[: example.length]
            out.append(
                TokenScores(
                    example_id=example.example_id,
                    method=method,
                    scores=values,
                    content_mask=example.content_mask,
                    draw=draw,
                    diagnostics=diagnostics[row] if diagnostics is not None else {},
                )
            )
        return out

    def target_logit_gradients(self, embeddings: torch.Tensor, rows: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """``z_ŷ`` and ``∂z_ŷ/∂e`` at arbitrary input embeddings of this batch's rows.

        Args:
            embeddings: ``[N, W', D]`` input embeddings, each row shaped like batch row ``rows[n]``
                (same length, right-padded to ``W' >= T``).
            rows: ``[N]`` index of the batch row (example) each embedding row belongs to.

        Returns:
            ``([N], [N, W', D])``: the target logits and their gradients.
        """
        width = embeddings.shape[1]
        mask = self.attention_mask[rows, :width]
        types = self.token_type_ids[rows, :width]
        embeddings = embeddings.detach().requires_grad_(True)
        with torch.enable_grad():
            output = self._logits(mask, inputs_embeds=embeddings, token_type_ids=types)
            logits = output.gather(1, self.targets[rows][:, None])[:, 0]
            (grads,) = torch.autograd.grad(logits.sum(), [embeddings])
        tokens = int(self.lengths[rows.cpu().numpy()].sum())
        self.counter.forward_rows += len(rows)
        self.counter.backward_rows += len(rows)
        self.counter.forward_tokens += tokens
        self.counter.backward_tokens += tokens
        return logits.detach().double(), grads

    def target_logits(self, embeddings: torch.Tensor, rows: torch.Tensor) -> torch.Tensor:
        """``z_ŷ`` at arbitrary input embeddings of this batch's rows, without gradients, ``[N]``."""
        width = embeddings.shape[1]
        with torch.inference_mode():
            output = self._logits(
                self.attention_mask[rows, :width],
                inputs_embeds=embeddings,
                token_type_ids=self.token_type_ids[rows, :width],
            )
        self.counter.forward_rows += len(rows)
        self.counter.forward_tokens += int(self.lengths[rows.cpu().numpy()].sum())
        return output.gather(1, self.targets[rows][:, None])[:, 0].double()

    def target_probabilities_at(self, embeddings: torch.Tensor, rows: torch.Tensor) -> np.ndarray:
        """``p_ŷ`` at arbitrary input word embeddings ``[N, W', D]`` of this batch's rows, ``[N]``."""
        width = embeddings.shape[1]
        with torch.inference_mode():
            logits = self._logits(
                self.attention_mask[rows, :width],
                inputs_embeds=embeddings,
                token_type_ids=self.token_type_ids[rows, :width],
            )
        self.counter.forward_rows += len(rows)
        self.counter.forward_tokens += int(self.lengths[rows.cpu().numpy()].sum())
        probabilities = torch.softmax(logits.double(), dim=1).gather(1, self.targets[rows][:, None])[:, 0]
        return probabilities.cpu().numpy()

    # --- interventions on the attention -------------------------------------------------------

    def intervened_probabilities(
        self,
        rows: np.ndarray,
        start: int,
        edit_for: Callable[[np.ndarray], AttentionEdit],
    ) -> torch.Tensor:
        """``p(x)`` with the attention edited, running layers ``start .. L-1`` from the cached hidden states.

        Args:
            rows: ``[N]`` batch row (example) of each run; rows may repeat (one run per draw).
            start: First layer to run; the edit must not touch layers below it.
            edit_for: Given the indices (into ``rows``) of the runs in one chunk, in chunk order,
                returns the edit for that chunk. Chunks are length-sorted and padded to their widest
                member, so an edit sees probabilities ``[n, H, W', W']``.

        Returns:
            ``[N, C]`` class probabilities, in the order of ``rows``.
        """
        adapter, model = self.bundle.adapter, self.bundle.model
        hidden = self.model_pass.hidden_states[start]

        def logits(members: np.ndarray, selected: torch.Tensor, width: int) -> torch.Tensor:
            mask = self.attention_mask[selected, :width]
            return adapter.logits_from(model, hidden[selected, :width], mask, start, edit_for(members))

        return self._chunked_probabilities(rows, start, logits)

    def probabilities_after_layer(
        self,
        rows: np.ndarray,
        layer: int,
        output_for: Callable[[np.ndarray, torch.Tensor, int], torch.Tensor],
    ) -> torch.Tensor:
        """``p(x)`` from given outputs of layer ``layer``: layers ``layer + 1 .. L-1`` run on them, then the head.

        For interventions that compute the changed layer's output without running it (head masking on a
        post-LN encoder, ``tasks.explain.clean_mixing``).

        Args:
            rows: ``[N]`` batch row (example) of each run; rows may repeat.
            layer: The layer whose output ``output_for`` gives; the layers below are left as they are.
            output_for: ``(members, selected, width) -> [n, W', D]``: the layer's output of the runs
                ``members`` (indices into ``rows``, chunk order) for the batch rows ``selected``, padded to
                ``W'``; for the last layer ``[n, 1, D]`` at ``c`` only.

        Returns:
            ``[N, C]`` class probabilities, in the order of ``rows``.
        """
        adapter, model = self.bundle.adapter, self.bundle.model
        last = layer == self.bundle.num_layers - 1

        def logits(members: np.ndarray, selected: torch.Tensor, width: int) -> torch.Tensor:
            output = output_for(members, selected, width)
            if last:
                return adapter.head(model, output[:, 0])
            return adapter.logits_from(model, output, self.attention_mask[selected, :width], layer + 1)

        return self._chunked_probabilities(rows, layer, logits)

    def _chunked_probabilities(
        self,
        rows: np.ndarray,
        start: int,
        logits_of: Callable[[np.ndarray, torch.Tensor, int], torch.Tensor],
    ) -> torch.Tensor:
        """Class probabilities of runs through layers ``start .. L-1``, in length-sorted chunks under the budget.

        ``logits_of(members, selected, width)`` gives a chunk's logits; each run counts one forward row and
        its tokens weighted by the share of layers run.
        """
        lengths = self.lengths[rows]
        order = np.argsort(lengths, kind="stable")
        probabilities = torch.empty((len(rows), self.model_pass.logits.shape[1]), dtype=torch.float64)
        share = (self.bundle.num_layers - start) / self.bundle.num_layers
        device = self.model_pass.hidden_states[0].device
        for chunk in chunks_under_budget(lengths[order].tolist(), self.token_budget):
            members = order[chunk]
            width = int(lengths[members].max())
            selected = torch.as_tensor(rows[members], device=device)
            with torch.inference_mode():
                logits = logits_of(members, selected, width)
            probabilities[torch.as_tensor(members)] = torch.softmax(logits.double(), dim=-1).cpu()
            self.counter.forward_rows += len(members)
            self.counter.forward_tokens += round(float(lengths[members].sum()) * share)
        return probabilities

    # --- perturbed inputs -----------------------------------------------------------------------

    def perturbed_probabilities(self, requests: Sequence[tuple[int, np.ndarray]]) -> np.ndarray:
        """``p_ŷ(x')`` for perturbed copies of batch rows, each distinct input computed once.

        Args:
            requests: ``(row, keep)`` pairs: ``keep`` is a boolean mask over the example's ``T``
                tokens; tokens with ``keep == False`` are removed (``removal`` says how). Callers keep
                the special tokens.

        Returns:
            ``[len(requests)]`` probabilities of each row's predicted class ``ŷ`` (of the original input).
        """
        keys = [(row, np.asarray(keep, dtype=bool).tobytes()) for row, keep in requests]
        missing = list(dict.fromkeys(key for key in keys if key not in self._perturbed))
        if missing:
            self._evaluate(missing)
        return np.array([self._perturbed[key] for key in keys], dtype=np.float64)

    def _evaluate(self, keys: list[tuple[int, bytes]]) -> None:
        sequences = []
        for row, keep_bytes in keys:
            example = self.examples[row]
            keep = np.frombuffer(keep_bytes, dtype=bool)
            if keep.shape[0] != example.length:
                raise ValueError(f"keep mask of length {keep.shape[0]} for an example of {example.length} tokens")
            sequences.append(self._perturb(example, keep))
        order = np.argsort([len(ids) for ids, _ in sequences], kind="stable")
        for chunk in chunks_under_budget([len(sequences[i][0]) for i in order], self.token_budget):
            members = [int(order[i]) for i in chunk]
            input_ids, types, mask = right_pad([sequences[m] for m in members], self.bundle.tokenizer.pad_token_id)
            device = self.bundle.device
            with torch.inference_mode():
                logits = self._logits(mask.to(device), input_ids=input_ids.to(device), token_type_ids=types.to(device))
                logits = logits.float()
            rows = torch.tensor([keys[m][0] for m in members], device=device)
            probabilities = torch.softmax(logits, dim=1).gather(1, self.targets[rows][:, None])[:, 0]
            for member, probability in zip(members, probabilities.double().cpu().tolist(), strict=True):
                self._perturbed[keys[member]] = probability
            self.counter.forward_rows += len(members)
            self.counter.forward_tokens += int(mask.sum())

    def _perturb(self, example: EncodedExample, keep: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        if self.removal == "delete":
            return example.input_ids[keep], example.token_type_ids[keep]
        tokenizer = self.bundle.tokenizer
        replacement = tokenizer.mask_token_id if self.removal == "mask" else tokenizer.pad_token_id
        if replacement is None:
            raise AuditError(
                f"the tokenizer has no {self.removal} token, so tokens cannot be replaced by it",
                "use --removal delete",
            )
        return np.where(keep, example.input_ids, replacement), example.token_type_ids

    # --- plumbing -----------------------------------------------------------------------------

    def _logits(
        self,
        attention_mask: torch.Tensor,
        *,
        input_ids: torch.Tensor | None = None,
        inputs_embeds: torch.Tensor | None = None,
        token_type_ids: torch.Tensor | None = None,
    ) -> torch.Tensor:
        """Logits of a forward pass whose only output is the logits (last layer at ``c`` only)."""
        types = self._token_types(token_type_ids).get("token_type_ids") if token_type_ids is not None else None
        return self.bundle.adapter.forward_logits(
            self.bundle.model,
            attention_mask,
            input_ids=input_ids,
            inputs_embeds=inputs_embeds,
            token_type_ids=types,
        )

    def _token_types(self, token_type_ids: torch.Tensor | None = None) -> dict[str, torch.Tensor]:
        """``token_type_ids`` for the families that take them (BERT, ALBERT, ELECTRA, ...)."""
        if getattr(self.bundle.model.config, "type_vocab_size", 0) in (0, None):
            return {}
        return {"token_type_ids": self.token_type_ids if token_type_ids is None else token_type_ids}
