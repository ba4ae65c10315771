"""The explain study's answers: each question's direct answer, whether the measurements support it (``holds``)
and the sentence that proves it with the numbers (:func:`answers`, from the measurements of
:func:`gumbench.benchmarks.studies.explain.explain_step`)."""

from __future__ import annotations

SAME = 1e-5  # relative differences below this: the same value, up to float32 rounding
WRONG = 0.1  # relative differences above this: clearly another value


def answers(r: dict) -> dict:
    """Every answer of one variant's measurements ``r``."""
    diversity, where = _vq_diversity_where(r) if r["variant"] == "vq-wav2vec" else _gumbel_diversity_where(r)
    return {
        "noise": _noise(r),
        "contrastive": _contrastive(r),
        "diversity": diversity,
        "where": where,
        "eval": _evaluation(r),
    }


def _noise(r: dict) -> dict:
    f, b = r["forward"], r["backward"]
    return {
        "answer": "yes, per (frame, group, code) rather than per example, and the backward reuses the same draw",
        "holds": (
            f["max_abs_difference_from_one_hot"] == 0
            and f["indices_equal_argmax_logits_plus_g"]
            and b["relative_error_same_noise"] < SAME
            and min(b["relative_error_without_noise"], b["relative_error_fresh_noise"]) > WRONG
        ),
        "proof": (
            f"g is a tensor of {f['noise_draws']:,} independent Gumbel(0, 1) draws, one per {r['rows_are'][:-1]}, "
            f"group and code ({' x '.join(map(str, f['noise_shape']))}), drawn once in the forward pass: the forward "
            f"value is exactly the one-hot of argmax(logits + g) with g replayed from the generator (max |difference| "
            f"{f['max_abs_difference_from_one_hot']:.1e}; a sample, not the mode: it differs from the noiseless "
            f"argmax in {100 * f['share_differing_from_noiseless_argmax']:.1f}% of {f['pairs']} "
            f"({r['rows_are'][:-1]}, group) pairs). "
            f"The backward uses the same g: the contrastive gradient at the logits equals J^T u, J the Jacobian of "
            f"softmax((logits + g)/tau), relative error {b['relative_error_same_noise']:.1e}; with g = 0 it would be "
            f"off by {100 * b['relative_error_without_noise']:.0f}%, with fresh noise by "
            f"{100 * b['relative_error_fresh_noise']:.0f}%."
        ),
    }


def _contrastive(r: dict) -> dict:
    b, t, h = r["backward"], r["temperature"], r["hard_rows"]
    return {
        "answer": "its value, yes: only the hard vectors; its backpropagation, no: the gradient reaches the logits "
        "through the softmax Jacobian of the straight-through step",
        "holds": (
            h["abs_difference"] == 0
            and t["contrastive_abs_difference"] == 0
            and t["same_codes"]
            and b["contrastive_gradient_norm_at_logits"] > 0
            and b["relative_error_same_noise"] < SAME
            and abs(t["gradient_norm_at_logits_other_tau"] - t["gradient_norm_at_logits"])
            > WRONG * t["gradient_norm_at_logits"]
        ),
        "proof": (
            f"Recomputed from the codebook rows the indices select, with nothing soft in it, the contrastive loss is "
            f"{h['value']:.6g} (|difference| {h['abs_difference']:.1e}); rerun with the same g at "
            f"tau = {t['other_tau']:.5g} instead of {t['tau']:.5g} it is {t['contrastive_at_other_tau']:.6g} "
            f"(|difference| {t['contrastive_abs_difference']:.1e}): "
            f"the probabilities are not in its value. Its gradient at the logits is not 0 but J^T u (norm "
            f"{b['contrastive_gradient_norm_at_logits']:.3e}, relative error {b['relative_error_same_noise']:.1e}): "
            f"the soft - stop_gradient(soft) term adds 0 to the value and softmax((logits + g)/tau)'s Jacobian to the "
            f"gradient, whose norm becomes {t['gradient_norm_at_logits_other_tau']:.3e} at tau = {t['other_tau']:.5g}."
        ),
    }


def _vq_diversity_where(r: dict) -> tuple[dict, dict]:
    """vq-wav2vec: no diversity term; the quantized vectors feed both the context network and the targets."""
    t, p = r["temperature"], r["paths"]
    diversity = {
        "answer": "there is no diversity loss, and no term's value uses the probabilities",
        "holds": r["weights"] == {"contrastive": 1.0} and t["contrastive_abs_difference"] == 0,
        "proof": (f"The loss is the contrastive term alone (total {r['values']['total']:.6g} = contrastive "
                  f"{r['values']['contrastive']:.6g}); its value does not move with tau (answer 2)."),
    }
    where = {
        "answer": "only in the backward pass, in the straight-through step; the hard one-hot's codebook rows are both "
        "the context network's input and the targets and distractors, and the gradient reaches the logits through both",
        "holds": (
            t["contrastive_abs_difference"] == 0
            and p["context_input_norm_at_logits"] > 0
            and p["targets_norm_at_logits"] > 0
            and p["sum_relative_error"] < SAME
            and p["value_abs_difference"] == 0
        ),
        "proof": (
            f"The loss value holds no probability (answer 2). The contrastive gradient at the forward value splits "
            f"into the context network's input and the targets and distractors (their sum matches autograd to "
            f"{p['upstream_split_relative_error']:.1e}); through the softmax Jacobian they reach the logits with "
            f"norms {p['context_input_norm_at_logits']:.3e} (context input) and {p['targets_norm_at_logits']:.3e} "
            f"(targets), together the gradient at the logits (relative error {p['sum_relative_error']:.1e})."
        ),
    }
    return diversity, where


def _gumbel_diversity_where(r: dict) -> tuple[dict, dict]:
    """wav2vec 2.0: the diversity term reads the noiseless probabilities; the quantized vectors are only targets."""
    t, p = r["temperature"], r["paths"]
    d = r["diversity"]
    diversity = {
        "answer": "in the loss value, yes: of the three terms only the diversity term is a function of probabilities "
        "(the noiseless softmax averaged over the masked frames, without g or tau); in the gradient, no: "
        "the contrastive term's gradient passes through softmax((logits + g)/tau) (answer 2)",
        "holds": (
            d["abs_difference"] < SAME * max(d["value"], 1e-12)
            and d["gradient_relative_difference"] < SAME
            and t["diversity_abs_difference"] == 0
            and r["gradient_norms"]["feature_penalty"]["logits"] == 0
            and r["gradient_norms"]["contrastive"]["logits"] > 0
        ),
        "proof": (
            f"The diversity term, {d['value']:.4g} as weighted (x{d['weight']:g}; {d['unweighted']:.4g} unweighted), "
            f"equals (GV - sum_g exp(H(mean over the {d['frames_averaged']} masked frames of softmax(logits))))/GV x "
            f"{d['weight']:g} recomputed by hand (|difference| {d['abs_difference']:.1e}, gradient relative difference "
            f"{d['gradient_relative_difference']:.1e}); it does not move with tau (|difference| "
            f"{t['diversity_abs_difference']:.1e}), and on softmax((logits + g)/tau) it would read "
            f"{d['by_hand_noisy_softmax']:.4g}. fairseq's log(p + 1e-7) would read {d['fairseq_log_guard']:.6g}. "
            f"The feature penalty's gradient at the logits is {r['gradient_norms']['feature_penalty']['logits']:g}; "
            f"the contrastive term's is {r['gradient_norms']['contrastive']['logits']:.3e}, the diversity term's "
            f"{r['gradient_norms']['diversity']['logits']:.3e} (x{d['weight']:g})."
        ),
    }
    where = {
        "answer": "(asked of vq-wav2vec) here the quantized vectors are only targets and distractors, so the "
        "contrastive gradient reaches the logits through that one path, in the straight-through step; the diversity "
        "term adds its own probabilities",
        "holds": p["context_input_norm_at_logits"] == 0
        and p["sum_relative_error"] < SAME
        and p["value_abs_difference"] == 0,
        "proof": (
            f"Through the targets and distractors the gradient at the logits has norm "
            f"{p['targets_norm_at_logits']:.3e} "
            f"(relative error {p['sum_relative_error']:.1e} against autograd); through the context network "
            f"{p['context_input_norm_at_logits']:g}, as the context network never reads the quantized vectors."
        ),
    }
    return diversity, where


def _evaluation(r: dict) -> dict:
    e = r["eval"]
    return {
        "answer": "in eval the quantizer takes the noiseless argmax(logits): no noise is drawn and no gradient reaches "
        "the logits",
        "holds": e["indices_equal_noiseless_argmax"] and e["generator_untouched"] and e["gradient_norm_at_logits"] == 0,
        "proof": (
            f"The same step in eval mode: codes equal to argmax(logits): {e['indices_equal_noiseless_argmax']}; the "
            f"generator left untouched: {e['generator_untouched']}; gradient norm at the logits "
            f"{e['gradient_norm_at_logits']:g}; the codes differ from the training sample in "
            f"{100 * e['share_differing_from_training_sample']:.1f}% of pairs and the contrastive loss on them is "
            f"{e['contrastive']:.6g}."
        ),
    }
