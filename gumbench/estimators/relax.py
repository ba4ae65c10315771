"""REBAR (Tucker, Mnih, Maddison, Lawson and Sohl-Dickstein 2017, "REBAR: Low-variance, unbiased gradient
estimates for discrete latent variable models", NeurIPS) and RELAX (Grathwohl, Choi, Wu, Roeder and
Duvenaud 2018, "Backpropagation through the Void", ICLR): score functions with a control variate c that is
evaluated on the Gumbel relaxation and learned online.

Categorical form, per row with groups g: z = log pi + g (g iid Gumbel, pi = softmax(logits)), b = argmax z
(a sample of Cat(pi)), and z~ the Gumbel vector conditioned on argmax z~ = b, reparameterised with fresh
E ~ Exp(1) so that it is differentiable in the logits (Tucker et al.'s conditional sampler):

    z~_b = -log E_b,        z~_i = log pi_i - log(E_i + E_b pi_i)   (i != b).

Both estimators are

    g_hat = (f(b) - c(z~)) grad log p(b) + grad c(z) - grad c(z~),

unbiased for any c (grad E[c(z)] = E[grad c(z)] by reparameterisation, and E_b[c(z~) grad log p(b) + grad c(z~)]
is the same gradient written through b and z~ | b), with the gradients through z and z~ at fixed noise.
The control variates:

    rebar:  c(x) = eta f(softmax(x / lambda))                       (2 more loss evaluations: 3 in all)
    relax:  c(x) = r_rho(softmax(x / lambda)), r a one-hidden-layer ReLU MLP on the flattened relaxation
            (G V -> hidden -> 1, the output layer starting at 0, so RELAX starts as plain REINFORCE;
            1 loss evaluation)

and their parameters (eta, log lambda; rho, log lambda) are learned by minimising the variance of g_hat:
since E[g_hat] does not depend on them, the gradient of E||g_hat||^2 is that of the variance. Here g_hat is
the gradient at the logits of each row, and the objective is the mean over the rows of ||g_hat_row||^2.

How this fits gumbench. The estimate is computed explicitly: the relaxed terms are built on a detached copy
of the logits, g_hat is their autograd gradient (with ``create_graph`` in training mode), and the surrogate is
``f(b) + <logits - sg(logits), sg(g_hat)>`` (:mod:`gumbench.estimators.explicit`): its gradient at the logits is
g_hat, parameters inside ``loss_fn`` get f(b)'s pathwise gradient, and the control variate's own parameters
get nothing from it (so an optimizer over a model that holds the estimator leaves them alone). Instead, each
call in training mode takes one Adam step (learning rate ``lr``) on the control variate's parameters from
that call's rows, after the estimate was made (so every returned estimate is unbiased for the parameters it
used); eval mode only estimates. In a training run that is RELAX's joint optimisation, one step per batch.
In gradient statistics the rows are independent estimates at one set of logits, drawn in chunks: the
discarded warm-up draw and each chunk are one step each, so the statistics describe the control variate as
it trains over those few steps (the estimates stay unbiased; their variance falls as it trains).
"""

from __future__ import annotations

import math

import torch
from torch.nn.parameter import UninitializedParameter

from gumbench.errors import GumbenchError
from gumbench.estimators.base import CategoricalEstimator, EstimatorOutput, call_loss, one_hot, register
from gumbench.estimators.explicit import estimate_surrogate
from gumbench.kernels.reference import compute_dtype, gumbel_noise, uniform_open
from gumbench.plugin import TEMPERATURE, Range

LEARNING_RATE = Range(0, 10, meaning="Adam's learning rate for the control variate's parameters")
WARMUP = Range(0, 100_000, meaning="extra steps on the first training-mode call's logits, before its estimate")


def conditional_relaxation_noise(log_probs: torch.Tensor, index: torch.Tensor, generator=None) -> torch.Tensor:
    """z~ given argmax z~ = index, differentiable in ``log_probs`` (..., V) (normalised): fresh E ~ Exp(1),
    z~_b = -log E_b, z~_i = log pi_i - log(E_i + E_b pi_i); -inf at masked entries."""
    with torch.no_grad():
        exponentials = -torch.log(uniform_open(log_probs.shape, generator=generator, device=log_probs.device,
                                               dtype=log_probs.dtype))
    top = exponentials.gather(-1, index.unsqueeze(-1))
    others = log_probs - torch.log(exponentials + top * log_probs.exp())
    return others.scatter(-1, index.unsqueeze(-1), -torch.log(top))


class LearnedControlVariate(CategoricalEstimator):
    """Shared parts of REBAR and RELAX: the three samples, the explicit estimate and the variance step."""

    family = "score-function"

    def __init__(self, **params):
        super().__init__(**params)
        self.log_temperature = torch.nn.Parameter(torch.tensor(math.log(self.params["temperature"])))
        self.optimizer: torch.optim.Optimizer | None = None  # made on the first training-mode call
        self.warmed_up = False  # the first training-mode call takes ``warmup`` extra steps

    def control_variate(self, relaxed: torch.Tensor, loss_fn) -> torch.Tensor:
        """c at relaxed samples (N, ..., G, V) -> (N, ...)."""
        raise NotImplementedError  # abstract

    def estimate(self, logits, loss_fn, generator):
        work = logits.to(compute_dtype(logits.dtype))
        train = self.training and any(p.requires_grad for p in self.parameters())
        if train and not self.warmed_up:  # the first training-mode call: ``warmup`` steps on these logits first
            for _ in range(self.params["warmup"]):
                self.variance_step(self.draw(work, loss_fn, generator, train=True)[0])
            self.warmed_up = True
        g_hat, f, value, indices = self.draw(work, loss_fn, generator, train)
        if train:
            self.variance_step(g_hat)
        surrogate = f + estimate_surrogate(work, g_hat).to(f.dtype)
        return EstimatorOutput(surrogate=surrogate, value=value.to(logits.dtype), indices=indices, loss=f, aux={})

    def draw(self, work: torch.Tensor, loss_fn, generator, train: bool):
        """(g_hat (..., G, V), f(b) (...) with its graph, one-hot b, b) at the logits ``work``; g_hat keeps its graph
        to the control variate's parameters when ``train``."""
        leaf = work.detach().requires_grad_(True)
        log_probs = torch.log_softmax(leaf, dim=-1)
        with torch.no_grad():
            noise = gumbel_noise(work.shape, generator=generator, device=work.device, dtype=work.dtype)
            indices = (log_probs + noise).argmax(-1)
        value = one_hot(indices, work.shape[-1], work.dtype)
        f = call_loss(loss_fn, value, work.shape[:-2], self.spec)
        z, z_tilde = log_probs + noise, conditional_relaxation_noise(log_probs, indices, generator)
        temperature = self.log_temperature.exp().to(work.dtype)
        c = self.control_variate(torch.softmax(torch.stack((z, z_tilde)) / temperature, dim=-1), loss_fn)
        # grad c(z) - grad c(z~) through the noise; the score grad log p(b) = one_hot(b) - pi per group, explicitly,
        # so that its coefficient f(b) - c(z~) keeps its dependence on the control variate's parameters
        (pathwise,) = torch.autograd.grad((c[0] - c[1]).sum(), leaf, create_graph=train)
        score = value - log_probs.detach().exp()
        coefficient = f.detach().to(work.dtype) - c[1]
        return coefficient.reshape(*coefficient.shape, 1, 1) * score + pathwise, f, value, indices

    def variance_step(self, g_hat: torch.Tensor) -> None:
        """One Adam step on the control variate's parameters down the mean over rows of ||g_hat_row||^2."""
        params = [p for p in self.parameters() if p.requires_grad]
        moved = self.optimizer is not None and any(
            state["exp_avg"].dtype != p.dtype or state["exp_avg"].device != p.device
            for p in params if "exp_avg" in (state := self.optimizer.state.get(p, {})))
        if self.optimizer is None or moved:  # made on the first step; made afresh after .to() changed the parameters
            self.optimizer = torch.optim.Adam(params, lr=self.params["lr"])
        variance = g_hat.pow(2).sum(dim=(-2, -1)).mean()
        grads = torch.autograd.grad(variance, params, allow_unused=True)
        for p, grad in zip(params, grads):
            p.grad = None if grad is None else grad.detach().to(p.dtype)
        self.optimizer.step()
        for p in params:
            p.grad = None  # nothing left for an outer optimizer to apply


@register
class REBAR(LearnedControlVariate):
    name = "rebar"
    description = ("REBAR (Tucker 2017): score function with control variate eta f(softmax(z/lambda)) at z and the "
                   "conditional z~; eta and lambda learned on the variance; unbiased, 3 loss evaluations.")
    defaults = {"eta": 1.0, "temperature": 0.5, "lr": 0.01, "warmup": 0}
    ranges = {"eta": Range(-100, 100, meaning="initial scale of the control variate"), "temperature": TEMPERATURE,
              "lr": LEARNING_RATE, "warmup": WARMUP}
    loss_evaluations = 3  # f(b), f(softmax(z / lambda)), f(softmax(z~ / lambda))
    variants = ({"warmup": 200},)  # the default gradstats table: a control variate trained at the logits

    def __init__(self, **params):
        super().__init__(**params)
        self.eta = torch.nn.Parameter(torch.tensor(float(self.params["eta"])))

    def control_variate(self, relaxed, loss_fn):
        values = call_loss(loss_fn, relaxed, relaxed.shape[:-2], self.spec)
        return self.eta.to(values.dtype) * values


@register
class RELAX(LearnedControlVariate):
    name = "relax"
    description = ("RELAX (Grathwohl 2018): score function with a learned MLP control variate r(softmax(z/lambda)) "
                   "at z and the conditional z~, trained on the variance; unbiased, 1 loss evaluation.")
    defaults = {"hidden": 32, "temperature": 0.5, "lr": 0.01, "warmup": 0}
    ranges = {"hidden": Range(1, 4096, meaning="width of the control variate's hidden layer"),
              "temperature": TEMPERATURE, "lr": LEARNING_RATE, "warmup": WARMUP}
    variants = ({"warmup": 200},)  # the default gradstats table: a control variate trained at the logits

    def __init__(self, **params):
        super().__init__(**params)
        hidden = self.params["hidden"]
        self.hidden_weight = UninitializedParameter()  # (hidden, G V): made on the first call, when G V is known
        self.hidden_bias = torch.nn.Parameter(torch.zeros(hidden))
        self.output_weight = torch.nn.Parameter(torch.zeros(hidden))  # 0: RELAX starts as REINFORCE
        self.output_bias = torch.nn.Parameter(torch.zeros(()))

    def control_variate(self, relaxed, loss_fn):
        x = relaxed.flatten(-2)
        if isinstance(self.hidden_weight, UninitializedParameter):
            self.hidden_weight.materialize((self.params["hidden"], x.shape[-1]), dtype=torch.float32)
            bound = 1 / math.sqrt(max(1, x.shape[-1]))  # as torch.nn.Linear, from a fixed seed: estimators start alike
            with torch.no_grad():
                self.hidden_weight.uniform_(-bound, bound, generator=torch.Generator().manual_seed(0))
        elif self.hidden_weight.shape[-1] != x.shape[-1]:
            raise GumbenchError(f"{self.spec}: its control variate was made for {self.hidden_weight.shape[-1]} = G x V "
                                f"logits per row; got {x.shape[-1]}")
        hidden = torch.relu(x.to(self.hidden_weight.dtype) @ self.hidden_weight.T + self.hidden_bias)
        return (hidden @ self.output_weight + self.output_bias).to(relaxed.dtype)

