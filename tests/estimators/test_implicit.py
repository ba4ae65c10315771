"""gumbench.estimators.implicit, what the implicit-codebook quantizers (fsq, lfq, bsq) share: mixed-radix
digits against itertools' enumeration, index_digits consistent with the forward's values, assign_codes equal
to the forward's indices, and check()'s refusals, one line each, before any work."""

import itertools
import math

import pytest
import torch

from gumbench.errors import GumbenchError
from gumbench.estimators import make_estimator, registry
from gumbench.estimators.implicit import ImplicitCodebookVQ, mixed_radix_digits

IMPLICIT = ["fsq", "fsq[levels=7-6-3]", "lfq", "bsq"]


def gen(seed):
    return torch.Generator().manual_seed(seed)


def message(call) -> str:
    with pytest.raises(GumbenchError) as caught:
        call()
    assert "\n" not in str(caught.value)
    return str(caught.value)


def test_fsq_lfq_bsq_and_fsp_are_the_implicit_codebook_quantizers():
    implicit = [n for n in registry.names() if issubclass(registry.get(n), ImplicitCodebookVQ)]
    assert sorted(implicit) == ["bsq", "fsp", "fsq", "lfq"]


# --- mixed_radix_digits ------------------------------------------------------------------------

@pytest.mark.parametrize("radices", [(8, 5, 5, 5), (2, 2, 2), (7, 6, 3), (16,), (1, 4), (3, 1, 2)])
def test_digits_enumerate_the_codes_in_order(radices):
    total = math.prod(radices)
    # most significant first: itertools.product is lexicographic, the last digit fastest
    most_first = torch.tensor(list(itertools.product(*map(range, radices))))
    # least significant first: the first digit fastest, i.e. the product over the reversed radices, each reversed
    least_first = torch.tensor([code[::-1] for code in itertools.product(*map(range, radices[::-1]))])
    indices = torch.arange(total)
    assert torch.equal(mixed_radix_digits(indices, torch.tensor(radices), first_is_least=False), most_first)
    assert torch.equal(mixed_radix_digits(indices, torch.tensor(radices), first_is_least=True), least_first)


def test_digits_keep_the_leading_shape_and_take_any_integer_dtype():
    radices = torch.tensor([8, 5, 5, 5])
    indices = torch.tensor([[0, 1, 8], [40, 200, 999]], dtype=torch.int32)
    digits = mixed_radix_digits(indices, radices, first_is_least=True)
    assert digits.shape == (2, 3, 4) and digits.dtype == torch.int64
    # index = d0 + 8 d1 + 40 d2 + 200 d3
    assert digits[0].tolist() == [[0, 0, 0, 0], [1, 0, 0, 0], [0, 1, 0, 0]]
    assert digits[1].tolist() == [[0, 0, 1, 0], [0, 0, 0, 1], [7, 4, 4, 4]]
    assert mixed_radix_digits(torch.zeros(0, 3, dtype=torch.int64), radices, first_is_least=False).shape == (0, 3, 4)


@pytest.mark.parametrize("indices, got", [
    (torch.tensor([0.0, 1.0]), "torch.float32 tensor"),
    (torch.tensor([True]), "torch.bool tensor"),
    (torch.tensor([1j]), "torch.complex64 tensor"),
    ([0, 1], "list"),
])
def test_indices_must_be_an_integer_tensor(indices, got):
    assert message(lambda: mixed_radix_digits(indices, torch.tensor([8, 5]), first_is_least=True)) == (
        f"index_digits: indices must be an integer tensor, got {got}")


@pytest.mark.parametrize("indices, low, high", [([-1, 3], -1, 3), ([0, 40], 0, 40), ([39, 1000], 39, 1000)])
def test_indices_must_be_codes(indices, low, high):
    assert message(lambda: mixed_radix_digits(torch.tensor(indices), torch.tensor([8, 5]), first_is_least=False)) == (
        f"index_digits: indices must be in [0, 40), got values in [{low}, {high}]")


# --- index_digits and assign_codes of the three quantizers ----------------------------------------------

def level_indices(spec, value):
    """Each dimension's level index read off the forward's value, from each method's definition: FSQ's values
    are (digit - floor(L/2)) / floor(L/2); LFQ's and BSQ's signs give digit 1 for a positive value."""
    est = make_estimator(spec)
    if spec.startswith("fsq"):
        half = torch.tensor([level // 2 for level in est.levels], dtype=value.dtype)
        return torch.round(value * half + half).to(torch.int64)
    return (value > 0).to(torch.int64)


@pytest.mark.parametrize("spec", IMPLICIT)
def test_index_digits_of_the_codes_are_the_levels_of_the_forward_value(spec):
    est = make_estimator(spec).train()
    dim = len(est.levels) if spec.startswith("fsq") else 5
    codes, code_dim = est.code_shape(dim)
    assert code_dim == dim and codes == (math.prod(est.levels) if spec.startswith("fsq") else 2**dim)
    z = torch.randn(64, 3, dim, generator=gen(0)) * 2
    codebook = torch.zeros(codes, dim)
    out = est(z, lambda v: v.sum((-2, -1)), codebook=codebook)
    assert torch.equal(est.assign_codes(z, codebook), out.indices), "the forward's assignment, deterministic"
    digits = est.index_digits(out.indices, dim)
    assert digits.shape == (64, 3, dim)
    assert torch.equal(digits, level_indices(spec, out.value.detach()))
    levels = torch.tensor(est.digit_levels(dim))
    assert ((digits >= 0) & (digits < levels)).all()
    # the index order: the first dimension least significant (FSQ) or most significant (LFQ, BSQ)
    assert est.first_digit_least == spec.startswith("fsq")
    order = levels if est.first_digit_least else levels.flip(0)
    basis = torch.cumprod(torch.cat([torch.ones(1, dtype=torch.int64), order[:-1]]), 0)
    weights = basis if est.first_digit_least else basis.flip(0)
    assert torch.equal((digits * weights).sum(-1), out.indices)


def test_assign_codes_gives_no_gradient_path_and_checks_first():
    est = make_estimator("lfq")
    z = torch.randn(4, 2, 3, generator=gen(1), requires_grad=True)
    indices = est.assign_codes(z, torch.zeros(8, 3))
    assert indices.dtype == torch.int64 and not indices.requires_grad and indices.shape == (4, 2)
    assert torch.equal(indices, ((z.detach() > 0).long() * torch.tensor([4, 2, 1])).sum(-1))
    assert message(lambda: est.assign_codes(z, torch.zeros(4, 3))).startswith("lfq has 8 implicit codes of dimension 3")


def test_binary_digits_need_the_code_dimension_until_vectors_were_quantized():
    est = make_estimator("bsq")
    assert message(lambda: est.index_digits(torch.tensor([1]))).startswith(
        "bsq: the code dimension D is known once vectors have been quantized; pass dim=D")
    assert est.index_digits(torch.tensor([5, 0]), 3).tolist() == [[1, 0, 1], [0, 0, 0]]
    est.assign_codes(torch.randn(2, 1, 4), torch.zeros(16, 4))
    assert est.index_digits(torch.tensor([5])).tolist() == [[0, 1, 0, 1]], "D = 4 from the last vectors"


# --- check: refusals before any work ---------------------------------------------------------------

Z = torch.randn(2, 1, 4, generator=gen(2))
FLOAT = "fsq: inputs must be a float tensor of shape (..., G, D) with G, D >= 1, got"
FITS = "expected (G, K, D) = (1, K, 4) or (K, 4)"


@pytest.mark.parametrize("inputs, codebook, expected", [
    (Z.int(), torch.zeros(1000, 4), f"{FLOAT} torch.int32 of shape (2, 1, 4)"),
    (torch.randn(4), torch.zeros(1000, 4), f"{FLOAT} torch.float32 of shape (4,)"),
    (torch.randn(2, 0, 4), torch.zeros(1000, 4), f"{FLOAT} torch.float32 of shape (2, 0, 4)"),
    ([[0.0]], torch.zeros(1000, 4), f"{FLOAT} list"),
    (Z, None, "fsq needs codebook=tensor of shape (G, K, D) or (K, D) (only its shape is read), or a codebook "
              "of its own (own_codebook(codes, dim, groups)), got NoneType"),
    (Z, torch.zeros(1000, 4, dtype=torch.float64),
     "fsq: codebook must have the inputs' dtype and device (torch.float32 on cpu), got torch.float64 on cpu"),
    (Z, torch.zeros(2, 1000, 4), f"fsq: codebook shape (2, 1000, 4) does not fit inputs (2, 1, 4); {FITS}"),
    (Z, torch.zeros(1000, 3), f"fsq: codebook shape (1000, 3) does not fit inputs (2, 1, 4); {FITS}"),
    (Z, torch.zeros(1000), f"fsq: codebook shape (1000,) does not fit inputs (2, 1, 4); {FITS}"),
    (Z, torch.full((1000, 4), float("nan")),
     "fsq: NaN or inf in the codebook; allowed are finite values (only its shape is read)"),
    (Z * float("inf"), torch.zeros(1000, 4), "fsq: NaN or inf in the inputs; allowed are finite values"),
])
def test_bad_inputs_and_codebooks_are_refused_with_one_line(inputs, codebook, expected):
    assert message(lambda: make_estimator("fsq")(inputs, lambda v: v.sum((-2, -1)), codebook=codebook)) == expected


@pytest.mark.parametrize("spec, dim, codes",
                         [("fsq", 4, 7), ("fsq[levels=7-6-3]", 3, 128), ("lfq", 4, 8), ("bsq", 2, 16)])
def test_a_codebook_of_another_size_names_the_implicit_one(spec, dim, codes):
    est = make_estimator(spec)
    implicit, code_dim = est.code_shape(dim)
    text = message(lambda: est.check(torch.randn(3, 2, dim), torch.zeros(2, codes, dim)))
    assert text.startswith(f"{est.label} has {implicit} implicit codes of dimension {code_dim}; the codebook has shape "
                           f"(2, {codes}, {dim}) for inputs (3, 2, {dim}): ")
    assert f"codes={implicit}" in text
    est.check(torch.randn(3, 2, dim), torch.zeros(2, implicit, dim))  # the size it names is taken


def test_fsq_inputs_of_another_dimension_are_refused_even_with_a_fitting_codebook_size():
    assert message(lambda: make_estimator("fsq").check(torch.randn(2, 1, 3), torch.zeros(1000, 3))).startswith(
        "fsq has 1000 implicit codes of dimension 4; the codebook has shape (1000, 3) for inputs (2, 1, 3)")


def test_a_dimension_the_quantizer_cannot_take_is_refused_before_the_codebook_size():
    assert message(lambda: make_estimator("lfq").check(torch.randn(2, 1, 17), torch.zeros(4, 17))) == (
        "lfq: one bit per dimension allows at most D = 16 (65,536 codes), got D = 17")


def test_inputs_beyond_the_magnitude_limit_are_refused_and_the_limit_itself_is_taken():
    est = make_estimator("bsq")
    limit = math.sqrt(torch.finfo(torch.float32).max / (2 * 4))  # |z|^2 finite in float32 over D = 4
    assert est.magnitude_limit(torch.float32, 2, 4) == pytest.approx(limit)
    z = torch.zeros(3, 2, 4)
    z[1, 1, 2] = -1e19
    assert message(lambda: est.check(z, torch.zeros(2, 16, 4))) == (
        f"bsq: max |input| must be at most {limit:.3g} for float32 with G * D = 8 "
        "(losses and gradients must stay finite), got 1e+19")
    z[1, 1, 2] = 1e18
    est.check(z, torch.zeros(2, 16, 4))
    assert make_estimator("fsq").magnitude_limit(torch.float16, 1, 4) == math.inf, "FSQ bounds its inputs by tanh"


def test_empty_batches_pass_the_checks():
    for spec, codebook in (("fsq", torch.zeros(1000, 4)), ("lfq", torch.zeros(16, 4))):
        est = make_estimator(spec)
        est.check(torch.zeros(0, 1, 4), codebook)
        assert est.assign_codes(torch.zeros(0, 2, 4), codebook).shape == (0, 2)
