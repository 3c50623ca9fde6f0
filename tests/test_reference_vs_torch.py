"""The NumPy reference against the project's own PyTorch model (pytorch/model.py).

Two independent implementations of the official semantics are loaded with the same weights and
compared in float64 (spec clause 11.3 for whole models and multi-layer components; clause 11.1
per-element bounds for the linear operations). The weights are deliberately unlike an
initialisation (varied scales per tensor, norm weights and scales away from one, nonzero biases)
so that a mistake in any parameter's use shows. The first part checks the PyTorch model on its
own: exact official parameter counts and names, initialisation, and properties of the
oversized convolution (clauses 5 and 7).

Shape legend: N, C, H, W, K.
"""

from __future__ import annotations

import copy
import math

import numpy as np
import pytest

torch = pytest.importorskip("torch")
F = torch.nn.functional

from parcnetv2.pytorch import model as tm  # noqa: E402
from parcnetv2.spec import get_variant, variant_names  # noqa: E402
from parcnetv2.spec.tolerance import (  # noqa: E402
    assert_close,
    assert_relative,
    compare,
    elementwise_bound,
    relative_tolerance,
)

F64 = "float64"

# A non-square input whose every feature map has odd sides: 197x133 -> 49x33 -> 25x17 -> 13x9 -> 7x5.
ODD_RESOLUTION = (197, 133)
FULL_RESOLUTION = (224, 224)

# A small custom model: its kernels are 2H-1 of the 11x7, 6x4, 3x2, 2x1 feature maps of a 45x29
# image, so there interpolate=True keeps the vertical kernels and shrinks the horizontal ones
# (down to 1 tap); at ODD_RESOLUTION (49x33 ... 7x5) it stretches them. S=9 shrinks 21 and 11
# and stretches 5 and 3.
SMALL = dict(depths=(1, 1, 2, 1), dims=(8, 16, 24, 32), global_kernel_sizes=(21, 11, 5, 3), num_classes=10)
SMALL_IMAGE = (2, 3, 45, 29)
INTERPOLATE_MODES = [False, True, 9]


@pytest.fixture(scope="module")
def reference():
    """The NumPy reference package (imported here so the torch-only checks run without it)."""
    import parcnetv2.reference as ref

    return ref


# --------------------------------------------------------------------------------------------
# Weights, inputs and model construction shared by the tests.


def varied_state_dict(shapes: dict[str, tuple[int, ...]], seed: int) -> dict[str, np.ndarray]:
    """float64 weights with a scale of their own per tensor, under the official names.

    Conv/Linear weights: normal, std g / sqrt(fan_in) with g log-uniform in [0.5, 2], so
    pre-activations are O(1) and GELU is exercised in its nonlinear range. Biases: normal with a
    log-uniform std in [0.05, 0.5]. LayerNormGeneral weights: sqrt(C) times values in +-[0.5, 1.5]
    (the official norm divides by the L2 norm, i.e. an extra 1/sqrt(C); clause 4.1); the head
    LayerNorm weight: +-[0.5, 1.5]; Scale vectors: +-[0.5, 1.5]. Nothing is 0 or 1.
    """
    rng = np.random.default_rng(seed)

    def signed(shape):
        return rng.uniform(0.5, 1.5, shape) * rng.choice([-1.0, 1.0], shape)

    def log_uniform(lo, hi):
        return float(np.exp(rng.uniform(np.log(lo), np.log(hi))))

    out = {}
    for name, shape in shapes.items():
        if name.endswith(".scale") or name == "norm.weight":
            out[name] = signed(shape)
        elif name.endswith(("_norm.weight", "norm1.weight", "norm2.weight")):
            out[name] = math.sqrt(shape[0]) * signed(shape)
        elif name.endswith(".bias"):
            out[name] = rng.normal(0.0, log_uniform(0.05, 0.5), shape)
        else:
            fan_in = int(np.prod(shape[1:]))
            out[name] = rng.normal(0.0, log_uniform(0.5, 2.0) / math.sqrt(fan_in), shape)
    return out


def model_shapes(model) -> dict[str, tuple[int, ...]]:
    return {k: tuple(v.shape) for k, v in model.state_dict().items()}


def torch_model(sd=None, *, dtype=torch.float64, **kwargs):
    """A torch model (eval mode) loaded with ``sd`` (or left uninitialised for ``sd`` None)."""
    model = tm.build_model(dtype=dtype, init=False, **kwargs)
    if sd is not None:
        tm.load_numpy_state_dict(model, sd)
    return model


def run(model, x: np.ndarray, method=None) -> np.ndarray:
    with torch.no_grad():
        fn = model if method is None else getattr(model, method)
        return fn(torch.from_numpy(x)).numpy()


def images(shape, seed) -> np.ndarray:
    return np.random.default_rng(seed).normal(size=shape)


def abs_copy(module):
    """A copy of ``module`` with every parameter replaced by its absolute value (for magnitudes)."""
    twin = copy.deepcopy(module)
    with torch.no_grad():
        for p in twin.parameters():
            p.abs_()
    return twin


# --------------------------------------------------------------------------------------------
# The PyTorch model on its own.


@pytest.mark.parametrize("variant", variant_names())
def test_parameter_counts_are_official(variant):
    """Exact parameter counts of the official code, 1000 classes (clauses 9 and 10)."""
    model = torch_model(variant=variant, dtype=torch.float32)
    assert sum(p.numel() for p in model.parameters()) == get_variant(variant).params


@pytest.mark.parametrize("variant", variant_names())
def test_state_dict_names_shapes_and_order_match_reference(variant, reference):
    """Official state_dict names, shapes and order (clause 2), as the reference lists them."""
    model = torch_model(variant=variant, dtype=torch.float32)
    expected = reference.parameter_shapes(reference.Config.from_variant(variant))
    assert list(model_shapes(model).items()) == list(expected.items())


def test_module_names_match_reference_components(reference):
    """Every named non-Identity module is a component of the reference with the same name."""
    ref = reference.create("parcnetv2_xt", seed=0)
    model = torch_model(variant="parcnetv2_xt", dtype=torch.float32)
    names = [n for n, m in model.named_modules() if n and not isinstance(m, torch.nn.Identity)]
    containers = {"downsample_layers", "stages"}
    assert [n for n in names if n not in containers] == ref.component_names()
    identities = [n for n, m in model.named_modules() if isinstance(m, torch.nn.Identity)]
    assert identities and all(n.split(".")[1] in ("0", "1") for n in identities)


def test_official_initialisation():
    """Conv/Linear weights truncated normal std 0.02 within +-2, zero biases, unit norms and
    scales (clause 2.3); the same seed gives the same weights."""
    a = tm.build_model("parcnetv2_xt", seed=3)
    b = tm.build_model("parcnetv2_xt", seed=3)
    weights = []
    for name, p in a.state_dict().items():
        assert torch.equal(p, b.state_dict()[name]), name
        if name.endswith(".bias"):
            assert torch.count_nonzero(p) == 0, name
        elif p.ndim >= 2:
            assert p.abs().max() <= 2.0, name
            weights.append(p.flatten())
        else:
            assert torch.all(p == 1), name
    samples = torch.cat(weights)
    std = samples.std().item()
    # Six standard errors of a normal sample's standard deviation, sigma / sqrt(2 n).
    assert abs(std - 0.02) <= 6 * 0.02 / math.sqrt(2 * samples.numel()), std


def test_shapes_at_odd_resolution():
    """NCHW images -> NHWC maps of odd sizes per stage -> (N, C) features -> (N, classes) logits."""
    model = tm.build_model(dtype=torch.float64, seed=0, **SMALL)
    seen = []
    hooks = [m.register_forward_hook(lambda m, i, o: seen.append(tuple(o.shape))) for m in model.downsample_layers]
    x = images((2, 3, *ODD_RESOLUTION), 0)
    assert run(model, x, "forward_features").shape == (2, SMALL["dims"][-1])
    assert run(model, x).shape == (2, SMALL["num_classes"])
    for h in hooks:
        h.remove()
    expected = [(2, 49, 33, 8), (2, 25, 17, 16), (2, 13, 9, 24), (2, 7, 5, 32)]
    assert seen[:4] == expected


def _oc_magnitude(module, x):
    """|k_h| * |k_w| applied to |x| in float64: the magnitude of the oversized conv (clause 11.1)."""
    with torch.no_grad():
        return abs_copy(module).double()(x.double().abs()).numpy()


@pytest.mark.parametrize("dtype", ["float32", F64])
@pytest.mark.parametrize("interpolate", INTERPOLATE_MODES)
def test_oversized_conv_order_commutes(dtype, interpolate):
    """conv_h then conv_w equals conv_w then conv_h (supplement Sec. B; clause 5)."""
    rng = np.random.default_rng(1)
    oc = tm.OversizeConv2d(6, 13, interpolate).to(getattr(torch, dtype))
    with torch.no_grad():
        for p in oc.parameters():
            p.copy_(torch.from_numpy(rng.normal(size=p.shape)))
    x = torch.from_numpy(rng.normal(size=(2, 6, 7, 5))).to(getattr(torch, dtype))
    with torch.no_grad():
        out = oc(x)
        if interpolate is False:
            k_h, k_w, pad_h, pad_w = oc.conv_h.weight, oc.conv_w.weight, 6, 6
        elif interpolate is True:
            k_h, k_w = oc.resized_kernels(13, 9)
            pad_h, pad_w = 6, 4
        else:
            k_h, k_w = oc.resized_kernels(interpolate, interpolate)
            pad_h = pad_w = interpolate // 2
        swapped = F.conv2d(F.conv2d(x, k_w, padding=(0, pad_w), groups=6), k_h, padding=(pad_h, 0), groups=6)
    n = k_h.shape[2] * k_w.shape[3]
    bound = elementwise_bound(_oc_magnitude(oc, x), dtype, n)
    assert_close(swapped.numpy(), out.numpy(), bound, op="oversized_conv order", params={"interpolate": interpolate})


def test_interpolation_to_own_size_is_identity():
    """With 2H-1 = 2W-1 = K (or S = K) the resized kernels equal the stored ones (clause 5.2/5.3)."""
    rng = np.random.default_rng(2)
    x = torch.from_numpy(rng.normal(size=(1, 4, 7, 7)))
    outs = []
    for mode in INTERPOLATE_MODES[:2] + [13]:
        oc = tm.OversizeConv2d(4, 13, mode).double()
        with torch.no_grad():
            for p in oc.parameters():
                p.copy_(torch.from_numpy(np.random.default_rng(3).normal(size=p.shape)))
            outs.append(oc(x).numpy())
    bound = elementwise_bound(_oc_magnitude(oc, x), F64, 13 * 13)
    for out in outs[1:]:
        assert_close(out, outs[0], bound, op="oversized_conv identity resize")


@pytest.mark.parametrize("reparam_source", ["torch", "reference"])
def test_reparameterized_kernel(reparam_source, reference):
    """OC + DW7 equals one dense depthwise conv with outer(k_h, k_w) + centred k7 (clause 7)."""
    rng = np.random.default_rng(4)
    mixer = tm.ParC_V2(6, 11).double()
    with torch.no_grad():
        for p in mixer.parameters():
            p.copy_(torch.from_numpy(rng.normal(size=p.shape) / math.sqrt(p[0].numel())))
    k_h, k_w, k7 = mixer.dwconv1.conv_h.weight, mixer.dwconv1.conv_w.weight, mixer.dwconv2.weight
    x = torch.from_numpy(rng.normal(size=(2, 6, 6, 9)))
    with torch.no_grad():
        if reparam_source == "torch":
            dense = tm.reparameterize(k_h, k_w, k7)
        else:
            dense = torch.from_numpy(reference.reparameterize(k_h.numpy(), k_w.numpy(), k7.numpy()))
        merged = F.conv2d(x, dense, padding=5, groups=6)
        split = mixer.dwconv1(x) + mixer.dwconv2(x)
        magnitude = abs_copy(mixer.dwconv1)(x.abs()) + abs_copy(mixer.dwconv2)(x.abs())
        expected_dense = k_h * k_w
        expected_dense[:, :, 2:9, 2:9] += k7
    assert_close(
        dense.numpy(),
        expected_dense.numpy(),
        elementwise_bound(expected_dense.abs().numpy(), F64, 2),
        op="reparameterize",
    )
    assert_close(
        merged.numpy(), split.numpy(), elementwise_bound(magnitude.numpy(), F64, 11 * 11), op="reparameterized conv"
    )


def test_layer_norm_general_is_layer_norm_over_sqrt_c():
    """The official norm equals the standard LayerNorm (no eps) divided by sqrt(C) (clause 4.1)."""
    rng = np.random.default_rng(5)
    norm = tm.LayerNormGeneral(12).double()
    with torch.no_grad():
        norm.weight.copy_(torch.from_numpy(rng.normal(size=12)))
        x = torch.from_numpy(rng.normal(size=(2, 3, 4, 12)))
        got = norm(x).numpy()
        expected = (F.layer_norm(x, (12,), eps=0.0) * norm.weight / math.sqrt(12)).numpy()
    assert_relative(got, expected, dtype=F64, op="LayerNormGeneral vs LayerNorm/sqrt(C)")


def test_numpy_state_dict_round_trip_and_errors():
    model = tm.build_model(seed=0, **SMALL)
    sd = tm.numpy_state_dict(model)
    twin = torch_model(sd, dtype=torch.float32, **SMALL)
    for name, t in twin.state_dict().items():
        assert np.array_equal(t.numpy(), sd[name]), name
    with pytest.raises(ValueError, match="missing"):
        tm.load_numpy_state_dict(twin, {k: v for k, v in sd.items() if k != "head.bias"})
    with pytest.raises(ValueError, match="shape"):
        tm.load_numpy_state_dict(twin, {**sd, "head.bias": np.zeros(3)})


def test_every_parameter_matters():
    """Redrawing any single tensor of the varied weights changes the logits by more than the
    float64 tolerance, so the model-level comparisons below would catch its misuse."""
    model = torch_model(**SMALL)
    sd = varied_state_dict(model_shapes(model), seed=10)
    other = varied_state_dict(model_shapes(model), seed=11)
    x = images(SMALL_IMAGE, 12)
    tm.load_numpy_state_dict(model, sd)
    base = run(model, x)
    scale = np.max(np.abs(base))
    undetected = []
    for name in sd:
        tm.load_numpy_state_dict(model, {**sd, name: other[name]})
        result = compare(run(model, x), base, np.full(base.shape, relative_tolerance(F64) * scale), op=name)
        if result.ok:
            undetected.append(name)
    assert not undetected


# --------------------------------------------------------------------------------------------
# The NumPy reference against the PyTorch model.


@pytest.fixture(scope="module", params=variant_names())
def variant_pair(request, reference):
    """(name, torch float64 model, reference model) sharing one set of varied weights."""
    name = request.param
    model = torch_model(variant=name)
    sd = varied_state_dict(model_shapes(model), seed=20 + variant_names().index(name))
    tm.load_numpy_state_dict(model, sd)
    ref = reference.from_state_dict(sd, variant=name)
    yield name, model, ref
    del model, ref, sd


@pytest.mark.parametrize("resolution", [FULL_RESOLUTION, ODD_RESOLUTION], ids=["224x224", "197x133"])
def test_whole_model_float64(variant_pair, resolution):
    """Logits and forward_features of every variant, float64, clause 11.3."""
    name, model, ref = variant_pair
    batch = 2 if name == variant_names()[0] else 1
    x = images((batch, 3, *resolution), seed=30)
    with torch.no_grad():
        features_t = model.forward_features(torch.from_numpy(x))
        logits_t = model.head(features_t).numpy()
    params = {"variant": name, "input": x.shape}
    assert_relative(ref.forward_features(x), features_t.numpy(), dtype=F64, op="forward_features", params=params)
    assert_relative(ref(x), logits_t, dtype=F64, op="logits", params=params)


@pytest.mark.parametrize("interpolate", INTERPOLATE_MODES)
def test_small_model_all_interpolate_modes(interpolate, reference):
    """A custom model in every oversized-conv mode, through the reference's state_dict loader,
    with the separable mixers and with the reparameterized dense kernels (clauses 5 and 7.2)."""
    model = torch_model(interpolate=interpolate, **SMALL)
    sd = varied_state_dict(model_shapes(model), seed=40)
    tm.load_numpy_state_dict(model, sd)
    ref = reference.from_state_dict(sd, interpolate=interpolate)
    merged = ref.with_reparameterized_mixers()
    for shape in (SMALL_IMAGE, (2, 3, *ODD_RESOLUTION)):
        x = images(shape, seed=41)
        expected = run(model, x)
        for label, impl in (("logits", ref), ("logits, reparameterized", merged)):
            params = {"interpolate": interpolate, "input": shape}
            assert_relative(impl(x), expected, dtype=F64, op=label, params=params)


# Component kinds whose output is a linear function of the input with parameters that can be
# taken in absolute value: these are checked per element (clause 11.1) as well.
def _reduction_length(module, x: torch.Tensor) -> int | None:
    if isinstance(module, torch.nn.Conv2d):
        return int(np.prod(module.weight.shape[1:]))
    if isinstance(module, torch.nn.Linear):
        return module.in_features
    if isinstance(module, tm.Scale):
        return 1
    if isinstance(module, tm.OversizeConv2d):
        if module.interpolate is False:
            return module.kernel_size**2
        if module.interpolate is True:
            return (2 * x.shape[2] - 1) * (2 * x.shape[3] - 1)
        return module.interpolate**2
    return None


def _captured_io(model, x: np.ndarray):
    """Input and output of every named module during one forward pass of ``model``."""
    captured = {}

    def recorder(name):
        def hook(module, inputs, output):
            captured.setdefault(name, (module, inputs[0], output))  # returns None: output unchanged

        return hook

    hooks = [module.register_forward_hook(recorder(name)) for name, module in model.named_modules() if name]
    try:
        run(model, x)
    finally:
        for h in hooks:
            h.remove()
    return captured


REQUIRED_COMPONENTS = [
    "downsample_layers.0",
    "downsample_layers.1",
    "downsample_layers.0.conv",
    "downsample_layers.0.post_norm",
    "downsample_layers.3.pre_norm",
    "stages.0.0.norm1",
    "stages.0.0.token_mixer",
    "stages.0.0.token_mixer.pwconv1",
    "stages.0.0.token_mixer.act",
    "stages.0.0.token_mixer.dwconv1",
    "stages.3.0.token_mixer.dwconv1",
    "stages.0.0.token_mixer.dwconv2",
    "stages.0.0.token_mixer.pwconv2",
    "stages.2.1.res_scale1",
    "stages.2.1.res_scale2",
    "stages.1.0.norm2",
    "stages.1.0.mlp",
    "stages.1.0.mlp.fc1",
    "stages.1.0.mlp.act",
    "stages.1.0.mlp.fc2",
    "stages.0.0",
    "stages.2.1",
    "stages.2",
    "norm",
    "head",
]


@pytest.mark.parametrize("image", [SMALL_IMAGE, (1, 3, *ODD_RESOLUTION)], ids=["45x29", "197x133"])
@pytest.mark.parametrize("interpolate", INTERPOLATE_MODES)
def test_components_float64(interpolate, image, reference):
    """Every named component of a small custom model, on the inputs it sees in a forward pass:
    clause 11.3 for all, clause 11.1 per element for convolutions, linears and scales."""
    model = torch_model(interpolate=interpolate, **SMALL)
    sd = varied_state_dict(model_shapes(model), seed=50)
    tm.load_numpy_state_dict(model, sd)
    ref = reference.from_state_dict(sd, interpolate=interpolate)
    captured = _captured_io(model, images(image, seed=51))
    names = ref.component_names()
    assert set(REQUIRED_COMPONENTS) <= set(captured) and set(REQUIRED_COMPONENTS) <= set(names)
    if interpolate is False:
        assert "stages.0.0.token_mixer.dwconv1.conv_h" in captured
    checked = []
    for name in names:
        if name not in captured:  # conv_h / conv_w modules are bypassed when kernels are resized
            assert interpolate is not False and name.endswith(("conv_h", "conv_w")), name
            continue
        module, x, out = captured[name]
        params = {"interpolate": interpolate, "input": tuple(x.shape)}
        got = ref.component(name)(x.numpy())
        assert_relative(got, out.numpy(), dtype=F64, op=name, params=params)
        n = _reduction_length(module, x)
        if n is not None:
            with torch.no_grad():
                magnitude = abs_copy(module)(x.abs()).numpy()
            assert_close(got, out.numpy(), elementwise_bound(magnitude, F64, n), op=name, params=params, dtype=F64)
        checked.append(name)
    assert set(REQUIRED_COMPONENTS) <= set(checked)


@pytest.mark.parametrize("interpolate", INTERPOLATE_MODES)
@pytest.mark.parametrize("size", [(1, 1), (1, 6), (5, 2), (9, 9), (12, 7)])
def test_oversized_conv_op_sizes(interpolate, size, reference):
    """The reference's oversized_conv op at map sizes below, at and above (K+1)/2, float32 and
    float64 (clause 5, per element against the float64 PyTorch result, clause 11.1)."""
    rng = np.random.default_rng(60)
    oc = tm.OversizeConv2d(3, 11, interpolate).double()
    with torch.no_grad():
        for p in oc.parameters():
            p.copy_(torch.from_numpy(rng.normal(size=p.shape)))
    x = torch.from_numpy(rng.normal(size=(2, 3, *size)))
    with torch.no_grad():
        expected = oc(x).numpy()
        magnitude = abs_copy(oc)(x.abs()).numpy()
    n = _reduction_length(oc, x)
    k_h, k_w = oc.conv_h.weight.detach().numpy(), oc.conv_w.weight.detach().numpy()
    params = {"interpolate": interpolate, "input": tuple(x.shape)}
    for dtype in (np.float32, np.float64):
        got = reference.oversized_conv(x.numpy().astype(dtype), k_h.astype(dtype), k_w.astype(dtype), interpolate)
        assert_close(
            got, expected, elementwise_bound(magnitude, dtype, n), op="oversized_conv", params=params, dtype=dtype
        )
