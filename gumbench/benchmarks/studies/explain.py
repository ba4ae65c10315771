"""``gumbench explain``: the question gumbench was built from, answered on both papers' architectures.

The question (AI Stack Exchange, "Understanding gumbel-softmax backpropagation in Wav2Vec
papers"): in vq-wav2vec and wav2vec 2.0, "during the forward pass, i = argmax_j p_j and in the
backward pass, the true gradient of the Gumbel-Softmax outputs is used". (1) Is the Gumbel noise
drawn per example in the forward pass and held constant in the backward pass? (2) Does the
contrastive loss use only the sampled hard vectors, the probabilities never appearing in it, not
even in backpropagation? (3) Does only the diversity loss use the probabilities? (4) In
vq-wav2vec, which has no diversity loss, where do the probabilities enter the loss at all?

For the first training step from a seed of the ``wav2vec2`` task and of the ``vq-wav2vec`` task
(real speech, quantizer ``st-gumbel`` at the tasks' scheduled temperature), :func:`explain`
answers each question directly and then measures what shows it:

* per loss term (each as weighted in the total) the norm of its gradient at the quantizer logits,
  the codebook and the convolutional encoder, and that the per-term gradients add up to the total's;
* (1) that the forward value is the one-hot of argmax(logits + g), g replayed from the generator
  state saved just before the quantizer ran (one draw per frame, group and code), and that the
  backward is J^T u, u the contrastive gradient at the forward value and J the Jacobian of
  softmax((logits + g)/tau) with the same g (against g = 0 and fresh noise);
* (2) that the contrastive loss's value is a function of the hard codebook rows only: recomputed
  from the rows the indices select it is unchanged, and rerun at twice the temperature with the
  same g its value is unchanged while its gradient at the logits changes;
* (3) that the diversity term (wav2vec 2.0) is the exact-entropy formula on the noiseless softmax
  averaged over the masked frames (no g, no tau), recomputed by hand, value and gradient;
* (4) through which of the quantized vectors' roles the contrastive gradient reaches the logits:
  the targets and distractors (both papers) and the context network's input (vq-wav2vec only),
  each path's J^T u and that they add up to the gradient;
* what changes in eval: the noiseless argmax, no draw from the generator, no gradient at the logits.

:func:`format_explanation` renders the dictionary as text: the answers first, then the proofs.
"""

from __future__ import annotations

import math

import torch

from gumbench.benchmarks.studies.explain_answers import answers
from gumbench.errors import GumbenchError
from gumbench.plugin import SEED, check_integer

VARIANTS = ("wav2vec2", "vq-wav2vec")
ESTIMATOR = "st-gumbel"
TARGETS = ("logits", "codebook", "encoder")
TERMS = {"wav2vec2": ("contrastive", "diversity", "feature_penalty"), "vq-wav2vec": ("contrastive",)}
ARCHITECTURES = {
    "wav2vec2": "wav2vec 2.0 (Baevski et al. 2020): the quantized vectors are the targets and distractors of the "
                "contrastive loss; the Transformer context network reads the masked, unquantized features",
    "vq-wav2vec": "vq-wav2vec (Baevski et al. 2020): the quantized sequence is the input of the convolutional context "
                  "network and the target of its prediction k = 1..K steps ahead (wav2vec's loss); no diversity loss",
}
QUESTION_SOURCE = "AI Stack Exchange, 'Understanding gumbel-softmax backpropagation in Wav2Vec papers'"
QUESTIONS = {
    "noise": "Is the Gumbel noise drawn per example in the forward pass and held constant in the backward pass?",
    "contrastive": ("Does the contrastive loss use only the sampled hard vectors, the probabilities never appearing "
                    "in it, not even in backpropagation?"),
    "diversity": "Does only the diversity loss use the probabilities?",
    "where": "In vq-wav2vec, which has no diversity loss, where do the probabilities enter the loss at all?",
}
STRAIGHT_THROUGH = (
    "The straight-through step: soft = softmax((logits + g)/tau), hard = one-hot of argmax(logits + g), and the "
    "quantizer's output is hard + soft - stop_gradient(soft). Its forward value is the hard one-hot (the soft terms "
    "cancel); its gradient is soft's, J^T u with J the Jacobian of that softmax. The one-hot selects codebook rows.")


def explain(audio_dir=None, seed: int = 0, variant: str = "both") -> dict:
    """Answers and measurements for ``variant`` (wav2vec2, vq-wav2vec or both); see the module docstring."""
    if variant not in (*VARIANTS, "both"):
        raise GumbenchError(f"variant must be one of {', '.join(VARIANTS)} or both; got {variant!r}")
    seed = check_integer("explain", "seed", seed, SEED)
    chosen = VARIANTS if variant == "both" else (variant,)
    return {"estimator": ESTIMATOR, "seed": int(seed), "step": 1,
            "audio": str(audio_dir) if audio_dir else "vendored corpus (gumbench/data/speech)",
            "question": {"source": QUESTION_SOURCE, **QUESTIONS}, "straight_through": STRAIGHT_THROUGH,
            "variants": {v: explain_step(v, audio_dir=audio_dir, seed=seed) for v in chosen}}


# --- one step ---------------------------------------------------------------------------

class _Step:
    """Step 1 of ``variant``'s task up to its loss terms, with what the quantizer saw and drew."""

    def __init__(self, variant, audio_dir, seed):
        from gumbench.estimators import make_estimator

        self.variant = variant
        if variant == "wav2vec2":
            from gumbench.benchmarks.training.speech import Wav2Vec2 as Task
        else:
            from gumbench.benchmarks.training.vq_wav2vec import VqWav2Vec as Task
        self.task = task = Task(audio_dir=str(audio_dir) if audio_dir else "")
        self.tau = task.temperature(1)
        with torch.random.fork_rng(devices=[]):
            torch.manual_seed(seed)  # as train(): model initialization
            self.model = task.build(make_estimator(ESTIMATOR).with_params(tau=self.tau))
        self.model.train()
        generator = torch.Generator().manual_seed(seed)
        self.wave = task.batch(1, generator)
        self.prepared = task.prepare(self.model, self.wave, generator)
        self.noise_state = generator.get_state()  # the quantizer's Gumbel noise is the next draw
        self.terms, seen = self.run(self.tau)
        self.value, self.indices = seen["value"], seen["indices"]
        self.logits = self.terms.bottleneck.logits

    def run(self, tau: float, training: bool = True):
        """The quantizer and loss terms again on the same prepared step, with the generator at the saved
        state (the same g), at temperature ``tau``; (terms, what the estimator returned, generator)."""
        from gumbench.estimators import make_estimator

        bottleneck = self.model.bottleneck
        original = bottleneck.estimator
        bottleneck.estimator = make_estimator(ESTIMATOR).with_params(tau=tau)
        self.model.train(training)
        generator = torch.Generator().manual_seed(0)
        generator.set_state(self.noise_state)
        seen = {}
        hook = bottleneck.estimator.register_forward_hook(
            lambda module, args, out: seen.update(value=out.value, indices=out.indices)
        )
        try:
            terms = self.task.quantize(self.model, self.prepared, generator)
        finally:
            hook.remove()
            bottleneck.estimator = original
            self.model.train()
        seen["generator_state"] = generator.get_state()
        return terms, seen

    def term(self, terms, name) -> torch.Tensor:
        return getattr(terms, name)

    def contrastive_of(self, context_onehot, target_onehot) -> torch.Tensor:
        """The contrastive term from one-hots (N or B x T, G, V): the rows they select as the context network's
        input (vq-wav2vec; wav2vec 2.0's context network does not read them) and as targets and distractors."""
        lookup = self.model.bottleneck.lookup
        if self.variant == "wav2vec2":
            return self.task.contrastive(self.model, self.prepared, lookup(target_onehot)).loss.mean()
        return self.task.predict(
            self.model, lookup(context_onehot), lookup(target_onehot), self.prepared.negatives
        ).loss.mean()

    def encoder_parameters(self):
        return list(self.model.feature_encoder.parameters())

    def weights(self) -> dict:
        p = self.task.params
        if self.variant == "wav2vec2":
            return {"contrastive": 1.0, "diversity": p["diversity"], "feature_penalty": p["feature_penalty"]}
        return {"contrastive": 1.0}


def explain_step(variant: str = "wav2vec2", *, audio_dir=None, seed: int = 0) -> dict:
    """The answers and measurements for one architecture; see the module docstring."""
    step = _Step(variant, audio_dir, seed)
    terms = step.terms
    groups, codes = step.logits.shape[-2:]
    per_term, norms, sums = _term_gradients(step)
    forward, g = _forward_check(step.logits, step.value, step.indices, step.noise_state)
    actual = per_term["contrastive"][0].double()
    shape = {"wav2vec2": "masked frames", "vq-wav2vec": "frames"}[variant]
    result = {
        "variant": variant,
        "architecture": ARCHITECTURES[variant],
        "task": step.task.label,
        "tau": step.tau,
        "groups": groups,
        "codes": codes,
        "quantized_rows": int(step.indices.reshape(-1, groups).shape[0]),
        "rows_are": shape,
        "crops": int(step.wave.shape[0]),
        "weights": step.weights(),
        "values": {name: float(step.term(terms, name).detach()) for name in (*TERMS[variant], "total")},
        "gradient_norms": norms,
        "sum_check": sums,
        "forward": forward,
        "backward": _backward_check(step, g, actual, seed),
        "temperature": _temperature_check(step),
        "hard_rows": _hard_rows_check(step),
        "paths": _path_check(step, g, actual),
        "diversity": _diversity_check(step, g, per_term),
        "eval": _eval_check(step),
    }
    result["answers"] = answers(result)
    return result


def _norm(tensors) -> float:
    return math.sqrt(sum(float(t.double().pow(2).sum()) for t in tensors))


def _relative(a: torch.Tensor, b: torch.Tensor) -> float:
    """||a - b|| / ||b||."""
    scale = float(b.double().norm())
    return float((a.double() - b.double()).norm()) / scale if scale > 0 else float((a - b).double().norm())


def _grad(loss, tensors) -> list[torch.Tensor]:
    if not loss.requires_grad:
        return [torch.zeros_like(t) for t in tensors]
    found = torch.autograd.grad(loss, tensors, retain_graph=True, allow_unused=True)
    return [torch.zeros_like(t) if g is None else g for g, t in zip(found, tensors)]


def _term_gradients(step):
    """Each term's gradient at the logits, the codebook and the encoder: (per-term gradients, norms, sum check)."""
    targets = {
        "logits": [step.logits],
        "codebook": [step.model.bottleneck.codebook],
        "encoder": step.encoder_parameters(),
    }
    flat = [t for ts in targets.values() for t in ts]
    split = [0]
    for ts in targets.values():
        split.append(split[-1] + len(ts))
    names = TERMS[step.variant]
    per_term = {name: _grad(step.term(step.terms, name), flat) for name in names}
    total = _grad(step.terms.total, flat)
    norms, sums = {}, {}
    for name, grads in [*per_term.items(), ("total", total)]:
        norms[name] = {target: _norm(grads[split[i]:split[i + 1]]) for i, target in enumerate(TARGETS)}
    for i, target in enumerate(TARGETS):
        added = [sum(per_term[name][k] for name in names) for k in range(split[i], split[i + 1])]
        difference = max(float((a - t).abs().max()) for a, t in zip(added, total[split[i]:split[i + 1]]))
        sums[target] = {"max_abs_difference": difference, "total_norm": norms["total"][target]}
    return per_term, norms, sums


def _forward_check(logits, value, indices, noise_state):
    """The forward value against the one-hot of argmax(logits + g), g replayed; returns (figures, g)."""
    from gumbench.estimators.base import one_hot
    from gumbench.kernels.reference import gumbel_noise

    codes = logits.shape[-1]
    replay = torch.Generator().manual_seed(0)
    replay.set_state(noise_state)
    g = gumbel_noise(logits.shape, generator=replay, dtype=torch.float32)
    sample = (logits.detach().float() + g).argmax(-1)
    noiseless = logits.detach().argmax(-1)
    return {
        "max_abs_difference_from_one_hot": float(
            (value.detach().float() - one_hot(sample, codes, torch.float32)).abs().max()
        ),
        "indices_equal_argmax_logits_plus_g": bool(torch.equal(indices, sample)),
        "share_differing_from_noiseless_argmax": float((sample != noiseless).double().mean()),
        "pairs": int(sample.numel()),
        "noise_draws": int(g.numel()),
        "noise_shape": list(g.shape),
    }, g


def _jacobian_vector(logits, g, tau, upstream):
    """J^T u for J the Jacobian of softmax((logits + g)/tau), in float64."""
    upstream = upstream.double()
    soft = torch.softmax((logits.detach().double() + g.double()) / tau, dim=-1)
    return soft * (upstream - (upstream * soft).sum(-1, keepdim=True)) / tau


def _backward_check(step, g, actual, seed) -> dict:
    """The contrastive gradient at the logits against J^T u with the same g, with g = 0 and with fresh noise."""
    from gumbench.kernels.reference import gumbel_noise

    (upstream,) = torch.autograd.grad(step.terms.contrastive, step.value, retain_graph=True)
    fresh = gumbel_noise(step.logits.shape, generator=torch.Generator().manual_seed(seed + 1), dtype=torch.float32)
    return {
        "relative_error_same_noise": _relative(_jacobian_vector(step.logits, g, step.tau, upstream), actual),
        "relative_error_without_noise": _relative(
            _jacobian_vector(step.logits, torch.zeros_like(g), step.tau, upstream), actual
        ),
        "relative_error_fresh_noise": _relative(_jacobian_vector(step.logits, fresh, step.tau, upstream), actual),
        "contrastive_gradient_norm_at_logits": float(actual.norm()),
    }


def _temperature_check(step) -> dict:
    """The step rerun at twice the temperature with the same g: the contrastive value (and the diversity's)
    stay, the contrastive gradient at the logits changes."""
    other = 2 * step.tau
    terms, seen = step.run(other)
    (gradient,) = _grad(terms.contrastive, [terms.bottleneck.logits])
    out = {
        "tau": step.tau,
        "other_tau": other,
        "contrastive": float(step.terms.contrastive.detach()),
        "contrastive_at_other_tau": float(terms.contrastive.detach()),
        "contrastive_abs_difference": abs(float(step.terms.contrastive.detach()) - float(terms.contrastive.detach())),
        "same_codes": bool(torch.equal(seen["indices"], step.indices)),
        "gradient_norm_at_logits": _norm(_grad(step.terms.contrastive, [step.logits])),
        "gradient_norm_at_logits_other_tau": float(gradient.norm()),
    }
    if step.variant == "wav2vec2":
        out["diversity_abs_difference"] = abs(float(step.terms.diversity.detach()) - float(terms.diversity.detach()))
    return out


def _hard_rows_check(step) -> dict:
    """The contrastive term recomputed from the codebook rows the indices select, nothing soft in it."""
    from gumbench.estimators.base import one_hot

    hard = one_hot(step.indices, step.logits.shape[-1], torch.float32)
    with torch.no_grad():
        value = step.contrastive_of(hard, hard)
    return {"value": float(value), "abs_difference": abs(float(value) - float(step.terms.contrastive.detach()))}


def _path_check(step, g, actual) -> dict:
    """The contrastive gradient at the forward value split by the role of the quantized vectors: the context
    network's input and the targets and distractors; each path's J^T u at the logits."""
    context = step.value.detach().clone().requires_grad_(True)
    target = step.value.detach().clone().requires_grad_(True)
    loss = step.contrastive_of(context, target)
    u_context, u_target = torch.autograd.grad(loss, [context, target], allow_unused=True)
    u_context = torch.zeros_like(context) if u_context is None else u_context
    (u,) = torch.autograd.grad(step.terms.contrastive, step.value, retain_graph=True)
    via_context = _jacobian_vector(step.logits, g, step.tau, u_context)
    via_target = _jacobian_vector(step.logits, g, step.tau, u_target)
    return {
        "context_input_norm_at_logits": float(via_context.norm()), "targets_norm_at_logits": float(via_target.norm()),
        "sum_relative_error": _relative(via_context + via_target, actual),
        "upstream_split_relative_error": _relative(u_context + u_target, u),
        "value_abs_difference": abs(float(loss.detach()) - float(step.terms.contrastive.detach())),
    }


def _exact_diversity(probs: torch.Tensor) -> torch.Tensor:
    """(G V - sum_g exp(H(mean_t p_tg))) / (G V) for probabilities (N, G, V), exact entropy (0 log 0 = 0)."""
    groups, codes = probs.shape[-2:]
    mean = probs.double().mean(0)
    perplexity = torch.exp(-torch.special.xlogy(mean, mean).sum(-1)).sum()
    return (groups * codes - perplexity) / (groups * codes)


def _diversity_check(step, g, per_term) -> dict:
    """The diversity term recomputed by hand from the noiseless softmax averaged over the masked frames."""
    weight = step.weights().get("diversity", 0.0)
    if weight <= 0:
        return {"weight": 0.0, "note": "no diversity loss (vq-wav2vec)"}
    logits = step.logits.detach()
    leaf = logits.clone().requires_grad_(True)
    by_hand = weight * _exact_diversity(torch.softmax(leaf.double(), dim=-1))
    (hand_gradient,) = torch.autograd.grad(by_hand, leaf)
    by_hand = by_hand.detach()
    mean = torch.softmax(logits.double(), dim=-1).mean(0)
    groups, codes = logits.shape[-2:]
    guarded = weight * (groups * codes - torch.exp(-(mean * torch.log(mean + 1e-7)).sum(-1)).sum()) / (groups * codes)
    value = float(step.terms.diversity.detach())
    return {
        "weight": weight,
        "value": value,
        "unweighted": value / weight,
        "by_hand_noiseless": float(by_hand),
        "abs_difference": abs(value - float(by_hand)),
        "gradient_relative_difference": _relative(hand_gradient, per_term["diversity"][0]),
        "by_hand_noisy_softmax": float(
            weight * _exact_diversity(torch.softmax((logits.double() + g.double()) / step.tau, dim=-1))
        ),
        "fairseq_log_guard": float(guarded),
        "frames_averaged": int(logits.shape[0]),
    }


def _eval_check(step) -> dict:
    """The same step in eval mode: the noiseless argmax, no noise drawn, no gradient at the logits."""
    terms, seen = step.run(step.tau, training=False)
    noiseless = terms.bottleneck.logits.detach().argmax(-1)
    (gradient,) = _grad(terms.contrastive, [terms.bottleneck.logits])
    return {
        "indices_equal_noiseless_argmax": bool(torch.equal(seen["indices"], noiseless)),
        "generator_untouched": bool(torch.equal(seen["generator_state"], step.noise_state)),
        "gradient_norm_at_logits": float(gradient.norm()),
        "share_differing_from_training_sample": float((seen["indices"] != step.indices).double().mean()),
        "contrastive": float(terms.contrastive.detach()),
    }


# --- text -------------------------------------------------------------------------------

NAMES = {"wav2vec2": "wav2vec 2.0", "vq-wav2vec": "vq-wav2vec"}
NUMBERS = {"noise": "(1)", "contrastive": "(2)", "diversity": "(3)", "where": "(4)", "eval": "eval:"}


def format_explanation(d: dict, width: int | None = None) -> str:
    """Readable text for :func:`explain`'s dictionary: the answers, then per architecture the proofs
    (tables fit ``width``, see :func:`gumbench.tables.render`)."""
    import textwrap

    wrap = width or 100

    def para(text, indent="  "):
        return textwrap.fill(text, wrap, initial_indent=indent, subsequent_indent=indent + "  ")

    q = d["question"]
    out = [f"gumbench explain: step {d['step']} from seed {d['seed']} on the {d['audio']}, quantizer {d['estimator']}",
           "", f"The question ({q['source']}):"]
    out += [para(f"{NUMBERS[k]} {q[k]}") for k in QUESTIONS]
    out += ["", para(d["straight_through"], "")]
    out += ["", "Answers (each proved below):"]
    for key in (*QUESTIONS, "eval"):
        for name, v in d["variants"].items():
            a = v["answers"][key]
            flag = "" if a["holds"] else " [NOT SUPPORTED by the measurement below]"
            out.append(para(f"{NUMBERS[key]} {NAMES[name]}: {a['answer']}.{flag}"))
    for name, v in d["variants"].items():
        out += _proof_lines(name, v, width, para)
    return "\n".join(out)


def _proof_lines(name: str, v: dict, width: int | None, para) -> list[str]:
    """One architecture's proofs: a table of its loss terms (value, gradient norms), the check that the terms'
    gradients add up to the total's, then each answer's proof, as paragraphs made by ``para``."""
    from gumbench.tables import render

    title = (
        f"{NAMES[name]} ({v['task']}): G = {v['groups']} groups x V = {v['codes']} codes, tau = {v['tau']:.5f}, "
        f"{v['quantized_rows']} quantized {v['rows_are']} of {v['crops']} crops"
    )
    rows = []
    for term in (*TERMS[name], "total"):
        weight = "" if term == "total" else f" (x{v['weights'][term]:g})"
        n = v["gradient_norms"][term]
        rows.append((term.replace("_", " ") + weight, f"{v['values'][term]:.4g}", f"{n['logits']:.3e}",
                     f"{n['codebook']:.3e}", f"{n['encoder']:.3e}"))
    out = [
        "",
        para(f"Proof, {NAMES[name]}: {v['architecture']}.", ""),
        render(
            title,
            ("loss term (weight)", "value (weighted)", "|grad|: logits", "codebook", "encoder"),
            rows,
            width=width,
        ),
    ]
    worst = max(s["max_abs_difference"] for s in v["sum_check"].values())
    out.append(
        para(
            f"The terms' gradients add up to the total's: largest |difference| {worst:.1e} over every entry at the "
            "logits, the codebook and the encoder."
        )
    )
    for key in (*QUESTIONS, "eval"):
        out.append(para(f"{NUMBERS[key]} {v['answers'][key]['proof']}"))
    return out
