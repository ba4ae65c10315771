"""``gumbench explain``: what one training step of wav2vec 2.0's quantizer does to its gradients.

For the first step of the ``wav2vec2`` task from a seed (real speech, straight-through
Gumbel-softmax quantizer as in fairseq's GumbelVectorQuantizer), and again for
vq-wav2vec's Gumbel variant (no diversity loss), :func:`explain` measures:

* per loss term (contrastive, diversity, feature penalty, each as weighted in the total) the
  norm of its gradient at the quantizer logits, at the codebook and at the convolutional
  feature encoder, and that the per-term gradients add up to the gradient of the total;
* that the forward value is the one-hot of argmax(logits + g), a sample: g is redrawn from
  the generator state saved just before the quantizer ran, and the share of (frame, group)
  pairs where that sample differs from the noiseless argmax(logits) is reported;
* that the backward passes through softmax((logits + g)/tau) with the same g: the contrastive
  term's gradient at the logits equals J^T u, u its gradient at the forward value and J the
  Jacobian of that softmax (compared with the same formula at g = 0 and at fresh noise);
* that the diversity term is computed from the noiseless softmax averaged over the masked
  frames: recomputed by hand here, value and gradient, against the same formula on the
  noisy softmax.

:func:`format_explanation` renders the dictionary as readable text.
"""

from __future__ import annotations

import math

import torch

from gumbench.errors import GumbenchError

VARIANTS = ("wav2vec2", "vq-wav2vec")
ESTIMATOR = "st-gumbel"
TARGETS = ("logits", "codebook", "encoder")
TERMS = ("contrastive", "diversity", "feature_penalty")


def explain(audio_dir=None, seed: int = 0, variant: str = "both") -> dict:
    """Explain the first training step of ``wav2vec2`` for ``variant`` (wav2vec2, vq-wav2vec or both)."""
    if variant not in (*VARIANTS, "both"):
        raise GumbenchError(f"variant must be one of {', '.join(VARIANTS)} or both; got {variant!r}")
    chosen = VARIANTS if variant == "both" else (variant,)
    return {"task": "wav2vec2", "estimator": ESTIMATOR, "seed": int(seed), "step": 1,
            "audio": str(audio_dir) if audio_dir else "vendored corpus (gumbench/data/speech)",
            "variants": {v: explain_step(v, audio_dir=audio_dir, seed=seed) for v in chosen}}


def _norm(tensors) -> float:
    return math.sqrt(sum(float(t.double().pow(2).sum()) for t in tensors))


def _relative(a: torch.Tensor, b: torch.Tensor) -> float:
    """||a - b|| / ||b||."""
    scale = float(b.double().norm())
    return float((a.double() - b.double()).norm()) / scale if scale > 0 else float((a - b).double().norm())


def _diversity_by_hand(probs: torch.Tensor) -> torch.Tensor:
    """(G V - sum_g exp(H(mean_t p_tg))) / (G V) for probabilities (N, G, V)."""
    groups, codes = probs.shape[-2:]
    mean = probs.mean(0)
    perplexity = torch.exp(-(mean * torch.log(mean + 1e-7)).sum(-1)).sum()
    return (groups * codes - perplexity) / (groups * codes)


def explain_step(variant: str = "wav2vec2", *, audio_dir=None, seed: int = 0) -> dict:
    """The measurements for one variant; see the module docstring."""
    step = _first_step(variant, audio_dir, seed)
    terms, task = step["terms"], step["task"]
    logits = terms.bottleneck.logits
    frames, groups, codes = logits.shape
    per_term, norms, sums = _term_gradients(terms, step["model"])
    forward, g = _forward_check(logits, step["value"], step["indices"], step["noise_state"])
    actual = per_term["contrastive"][0].double()
    return {
        "variant": variant, "tau": step["tau"], "groups": groups, "codes": codes, "masked_frames": frames,
        "crops": int(step["wave"].shape[0]), "frames_per_crop": int(terms.batch.mask.shape[1]),
        "weights": {"contrastive": 1.0, "diversity": task.params["diversity"], "feature_penalty": task.params["feature_penalty"]},
        "values": {name: float(getattr(terms, name).detach()) for name in (*TERMS, "total")},
        "gradient_norms": norms, "sum_check": sums, "forward": forward,
        "backward": _backward_check(terms, step["value"], g, step["tau"], actual, seed),
        "diversity": _diversity_check(task, terms, g, step["tau"], per_term["diversity"][0]),
    }


def _first_step(variant, audio_dir, seed) -> dict:
    """Step 1 of ``wav2vec2`` up to the loss terms, with what the quantizer saw and drew."""
    from gumbench.benchmarks.training.speech import Wav2Vec2
    from gumbench.estimators import make_estimator

    task = Wav2Vec2(variant=variant, audio_dir=str(audio_dir) if audio_dir else "")
    tau = task.temperature(1)
    estimator = make_estimator(ESTIMATOR).with_params(tau=tau)
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)  # as train(): model initialization
        model = task.build(estimator)
    model.train()
    generator = torch.Generator().manual_seed(seed)
    wave = task.batch(1, generator)
    masked = task.prepare(model, wave, generator)
    noise_state = generator.get_state()  # the quantizer's Gumbel noise is the next draw
    seen = {}
    hook = estimator.register_forward_hook(lambda module, args, out: seen.update(value=out.value, indices=out.indices))
    try:
        terms = task.quantize(model, masked, generator)
    finally:
        hook.remove()
    return {"task": task, "model": model, "tau": tau, "wave": wave, "terms": terms, "noise_state": noise_state, **seen}


def _term_gradients(terms, model):
    """Each term's gradient at the logits, the codebook and the encoder: (per-term gradients, norms, sum check)."""
    targets = {"logits": [terms.bottleneck.logits], "codebook": [model.bottleneck.codebook],
               "encoder": list(model.feature_encoder.parameters())}
    flat = [t for ts in targets.values() for t in ts]

    def gradients(loss):
        if not loss.requires_grad:
            return [torch.zeros_like(t) for t in flat]
        found = torch.autograd.grad(loss, flat, retain_graph=True, allow_unused=True)
        return [torch.zeros_like(t) if g is None else g for g, t in zip(found, flat)]

    split = [0]
    for ts in targets.values():
        split.append(split[-1] + len(ts))
    per_term = {name: gradients(getattr(terms, name)) for name in TERMS}
    total = gradients(terms.total)
    norms, sums = {}, {}
    for name, grads in [*per_term.items(), ("total", total)]:
        norms[name] = {target: _norm(grads[split[i]:split[i + 1]]) for i, target in enumerate(TARGETS)}
    for i, target in enumerate(TARGETS):
        added = [sum(per_term[name][k] for name in TERMS) for k in range(split[i], split[i + 1])]
        difference = max(float((a - t).abs().max()) for a, t in zip(added, total[split[i]:split[i + 1]]))
        sums[target] = {"max_abs_difference": difference, "total_norm": norms["total"][target]}
    return per_term, norms, sums


def _forward_check(logits, value, indices, noise_state):
    """The forward value against the one-hot of argmax(logits + g), g replayed; returns (figures, g)."""
    from gumbench.estimators.base import one_hot
    from gumbench.kernels.reference import gumbel_noise

    frames, groups, codes = logits.shape
    replay = torch.Generator().manual_seed(0)
    replay.set_state(noise_state)
    g = gumbel_noise(logits.shape, generator=replay, dtype=torch.float32)
    sample = (logits.detach().float() + g).argmax(-1)
    noiseless = logits.detach().argmax(-1)
    return {
        "max_abs_difference_from_one_hot": float((value.detach().float() - one_hot(sample, codes, torch.float32)).abs().max()),
        "indices_equal_argmax_logits_plus_g": bool(torch.equal(indices, sample)),
        "share_differing_from_noiseless_argmax": float((sample != noiseless).double().mean()),
        "pairs": frames * groups,
    }, g


def _backward_check(terms, value, g, tau, actual, seed) -> dict:
    """The contrastive gradient at the logits against J^T u, J the Jacobian of softmax((logits + g)/tau)."""
    from gumbench.kernels.reference import gumbel_noise

    logits = terms.bottleneck.logits
    (upstream,) = torch.autograd.grad(terms.contrastive, value, retain_graph=True)
    upstream = upstream.double()

    def through_softmax(noise):
        soft = torch.softmax((logits.detach().double() + noise.double()) / tau, dim=-1)
        return soft * (upstream - (upstream * soft).sum(-1, keepdim=True)) / tau

    fresh = gumbel_noise(logits.shape, generator=torch.Generator().manual_seed(seed + 1), dtype=torch.float32)
    return {
        "relative_error_same_noise": _relative(through_softmax(g), actual),
        "relative_error_without_noise": _relative(through_softmax(torch.zeros_like(g)), actual),
        "relative_error_fresh_noise": _relative(through_softmax(fresh), actual),
        "contrastive_gradient_norm_at_logits": float(actual.norm()),
    }


def _diversity_check(task, terms, g, tau, gradient) -> dict:
    """The diversity term recomputed by hand from the noiseless softmax averaged over the masked frames."""
    weight = task.params["diversity"]
    if weight <= 0:
        return {"weight": 0.0, "value": 0.0, "note": "no diversity loss (vq-wav2vec's Gumbel quantizer)"}
    logits = terms.bottleneck.logits
    leaf = logits.detach().clone().requires_grad_(True)
    by_hand = weight * _diversity_by_hand(torch.softmax(leaf.float(), dim=-1))
    (hand_gradient,) = torch.autograd.grad(by_hand, leaf)
    noisy = weight * _diversity_by_hand(torch.softmax((logits.detach().float() + g) / tau, dim=-1))
    return {
        "weight": weight, "value": float(terms.diversity.detach()), "by_hand_noiseless": float(by_hand.detach()),
        "abs_difference": abs(float(terms.diversity.detach()) - float(by_hand.detach())),
        "gradient_relative_difference": _relative(hand_gradient, gradient),
        "by_hand_noisy_softmax": float(noisy), "frames_averaged": logits.shape[0],
    }


def format_explanation(d: dict, width: int | None = None) -> str:
    """Readable text for :func:`explain`'s dictionary; its tables fit ``width`` (see :func:`gumbench.tables.render`)."""
    from gumbench.tables import render

    out = [f"gumbench explain: step {d['step']} of {d['task']} from seed {d['seed']} on {d['audio']}, "
           f"quantizer estimator {d['estimator']}"]
    for name, v in d["variants"].items():
        kind = {"wav2vec2": "wav2vec 2.0 quantizer", "vq-wav2vec": "vq-wav2vec Gumbel quantizer (no diversity loss)"}[name]
        title = (f"{kind}: G = {v['groups']} groups x V = {v['codes']} codes, tau = {v['tau']:.5f}, "
                 f"{v['masked_frames']} masked frames of {v['crops']} crops x {v['frames_per_crop']} frames")
        rows = []
        for term in (*TERMS, "total"):
            weight = "" if term == "total" else f" (x{v['weights'][term]:g})"
            n = v["gradient_norms"][term]
            rows.append((term.replace("_", " ") + weight, f"{v['values'][term]:.4g}", f"{n['logits']:.3e}", f"{n['codebook']:.3e}",
                         f"{n['encoder']:.3e}"))
        out += ["", render(title, ("loss term (weight)", "value", "|grad|: logits", "codebook", "encoder"), rows, width=width)]
        worst = max(s["max_abs_difference"] for s in v["sum_check"].values())
        out.append(f"  the three terms' gradients add up to the total's: largest |difference| {worst:.1e} "
                   f"over every entry at the logits, the codebook and the encoder")
        f = v["forward"]
        out.append(f"  forward: the value is the one-hot of argmax(logits + g) with g replayed from the generator "
                   f"(max |difference| {f['max_abs_difference_from_one_hot']:.1e}, indices equal: {f['indices_equal_argmax_logits_plus_g']}); "
                   f"a sample, not the mode: it differs from the noiseless argmax(logits) in "
                   f"{100 * f['share_differing_from_noiseless_argmax']:.1f}% of {f['pairs']} (frame, group) pairs")
        b = v["backward"]
        out.append(f"  backward: the contrastive gradient at the logits is J^T u, J the Jacobian of softmax((logits + g)/tau) "
                   f"with the same g (relative error {b['relative_error_same_noise']:.1e}); with g = 0 it would be off by "
                   f"{100 * b['relative_error_without_noise']:.0f}%, with fresh noise by {100 * b['relative_error_fresh_noise']:.0f}%")
        div = v["diversity"]
        if div["weight"] > 0:
            out.append(f"  diversity: equals (GV - sum_g exp(H(mean over the {div['frames_averaged']} masked frames of "
                       f"softmax(logits))))/GV x {div['weight']:g} recomputed by hand: |difference| {div['abs_difference']:.1e}, "
                       f"gradient relative difference {div['gradient_relative_difference']:.1e}; the same formula on "
                       f"softmax((logits + g)/tau) would give {div['by_hand_noisy_softmax']:.4g} instead of {div['value']:.4g}")
        else:
            out.append(f"  diversity: {div['note']}; the logits get the contrastive gradient only")
    return "\n".join(out)
