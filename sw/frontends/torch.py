"""The PyTorch frontend: a user's ``nn.Module`` (or a ``torch.export`` program) as a FloatGraph.

Why torch.export: it runs the module's own ``forward`` once and records the ATen ops it calls, so
``torch.flatten(x, 1)``, ``F.relu`` and ``nn.ReLU`` all arrive as the same few ops, whatever the
module's Python looks like, and a forward lowbit cannot follow (data-dependent control flow) fails
there, loudly, instead of being half-traced. torch.fx's ``symbolic_trace`` cannot enter batch norm.
The module is exported in eval mode and the graph is read as exported (``aten.linear``,
``aten.conv2d``, ``aten.batch_norm``, ``aten.max_pool2d``, …); the lower-level forms a program
saved after ``run_decompositions()`` holds (``addmm``/``mm`` + ``add``, ``convolution``,
``_native_batch_norm_legit_no_training``, ``max_pool2d_with_indices``, ``view``) are read too.

One walker (:func:`convert_program`) turns an ExportedProgram's graph, node by node, into FloatGraph
layers; :func:`convert_torch` exports a module and calls it, :func:`.torch_files.load_torch_file`
loads a ``.pt2`` (or, only when told to trust it, a pickled module) and calls it. The network must be one chain of
supported layers (:data:`SUPPORTED`); anything else — another op, two activations combined (a
residual add, a concatenation), a branch, training-mode batch norm or dropout — is refused with a
:class:`~.common.ModelImportError` naming the node, its op and what is supported. Nothing that
changes values is dropped. Two exact rewrites are made: a ``max-pool`` directly followed by a ReLU is
stored as ReLU then max-pool (max commutes with a non-decreasing function; lowbit pools the
activation's codes), and a constant added right after a linear/conv goes into its bias.

Layout: the source takes NCHW images ``[batch, C, H, W]`` (or flat ``[batch, F]``); the FloatGraph
takes NHWC ``(H, W, C)`` (or ``(F,)``). Conv weights keep torch's ``[OC, IC, KH, KW]`` (the
FloatGraph's own order); the first Linear after a flatten of an NCHW tensor gets its input columns
permuted once (:func:`~.common.nchw_columns`) so that the NHWC flatten computes the same function.
"""

from __future__ import annotations

import contextlib
import copy
import io
import logging
import math
import operator
import sys

import numpy as np
import torch
from torch import nn

from .common import CHECK_TOLERANCE, Imported, ModelImportError, Preprocessing, finish_import, nchw_columns
from .graph import BatchNorm, Conv2d, Dropout, Flatten, FloatGraph, GraphError, Linear, MaxPool2d, ReLU

__all__ = ["convert_torch", "convert_program", "from_torch", "SUPPORTED", "DEFAULT_RANDOM_CHECK"]

#: what the walker reads, as printed in every refusal
SUPPORTED = ("linear (aten.linear, addmm, mm/matmul + add of a bias), conv2d (groups 1, dilation 1, any stride and "
             "zero padding), batch_norm in eval mode (after a linear or conv), relu, max_pool2d (no padding, "
             "dilation 1, ceil_mode False), flatten/view/reshape to [batch, -1], dropout in eval mode, and "
             "clone/contiguous/alias/detach")
#: random uint8 images :func:`from_torch` checks on when given none
DEFAULT_RANDOM_CHECK = 256
_REFERENCE_CHUNK = 256

aten = torch.ops.aten
# nodes about shapes and asserts only: they compute nothing a layer sees
_META_OPS = {aten.sym_size, aten.sym_numel, aten.sym_stride, aten.sym_storage_offset, aten._assert_tensor_metadata,
             aten._assert_scalar, aten.sym_constrain_range, aten.sym_constrain_range_for_size, aten._assert_async}
_IDENTITY_OPS = {aten.clone, aten.contiguous, aten.alias, aten.detach, aten.lift_fresh_copy, aten._to_copy, aten.to}
_DROPOUT_OPS = {aten.dropout, aten.feature_dropout, aten.alpha_dropout, aten.feature_alpha_dropout, aten.native_dropout}
_HINTS = {**{op: f"lowbit's last layer emits logits: drop the {op.__name__.strip('_')} (argmax is unchanged)"
             for op in (aten.softmax, aten._softmax, aten.log_softmax, aten._log_softmax)},
          aten.cat: "a concatenation joins two paths; lowbit's networks are one chain of layers"}


class _Act:
    """The activation flowing down the chain: its per-example shape in the *source's* layout
    (``(C, H, W)`` or ``(F,)``) and, after a flatten of an NCHW image, that image's ``(C, H, W)``
    (the next Linear's columns are permuted for it)."""

    def __init__(self, shape, pending_chw=None):
        self.shape = tuple(int(d) for d in shape)
        self.pending_chw = pending_chw


class _Multi:
    """An op returning ``(activation, statistics or indices …)``: only item 0 is the activation."""

    def __init__(self, act: _Act, what: str):
        self.act, self.what = act, what


_META = object()  # the value of a shape or an assert node: nothing a layer computes with

def _op_name(target) -> str:
    if isinstance(target, torch._ops.OpOverload):
        return str(target.overloadpacket)
    return getattr(target, "__name__", str(target))


def _pair(v):
    return (int(v), int(v)) if isinstance(v, int) else tuple(int(d) for d in (list(v) * 2 if len(v) == 1 else v))


class _Walker:
    """Reads one ExportedProgram's graph into ``(name, layer)`` pairs (see the module docstring)."""

    def __init__(self, program, source: str):
        self.program, self.source = program, source
        sig = program.graph_signature
        self.constants = {}
        for table in (sig.inputs_to_parameters, sig.inputs_to_buffers,
                      getattr(sig, "inputs_to_lifted_tensor_constants", {})):
            for placeholder, fqn in table.items():
                value = program.state_dict[fqn] if fqn in program.state_dict else program.constants[fqn]
                self.constants[placeholder] = value.detach().clone()
        self.user_inputs = list(sig.user_inputs)
        self.layers: list[tuple[str, object]] = []
        self.counts: dict[str, int] = {}
        self.ops: list[str] = []
        self.current: _Act | None = None
        self.producer: str | None = None  # the node that made ``current``
        self.last_weighted_out: _Act | None = None  # output of the last Linear/Conv2d, until another layer follows

    # -- messages -------------------------------------------------------------------------
    def _where(self, node) -> str:
        stack = node.meta.get("nn_module_stack") or {}
        module = ""
        if stack:
            path, cls = list(stack.values())[-1]
            cls = cls.rsplit(".", 1)[-1] if isinstance(cls, str) else getattr(cls, "__name__", str(cls))
            module = f", in module {path!r} ({cls})" if path else f", in the top module ({cls})"
        return f"node {node.name!r} (op {_op_name(node.target)}{module})"

    def refuse(self, node, why: str) -> ModelImportError:
        return ModelImportError(f"{self.source}: {self._where(node)} {why}; the torch importer supports {SUPPORTED}")

    # -- building -------------------------------------------------------------------------
    def add(self, prefix: str, layer, out: _Act, *, weighted=False) -> _Act:
        i = self.counts.get(prefix, 0)
        self.counts[prefix] = i + 1
        name = prefix if prefix == "flatten" and i == 0 else f"{prefix}{i}"
        self.layers.append((name, layer))
        self.current = out
        self.last_weighted_out = out if weighted else None
        return out

    def const(self, node, value, what: str) -> torch.Tensor:
        if not isinstance(value, torch.Tensor):
            raise self.refuse(node, f"needs a constant tensor (a parameter or buffer) as its {what}, not "
                                    f"{type(value).__name__}")
        return value.detach().float()

    def walk(self) -> tuple[tuple[int, ...], FloatGraph]:
        graph = self.program.graph_module.graph
        env: dict = {}
        inputs = [n for n in graph.nodes if n.op == "placeholder" and n.name in self.user_inputs]
        if len(inputs) != 1:
            raise ModelImportError(f"{self.source} takes {len(inputs)} inputs; lowbit imports models of one input "
                                   "(a batch of images or of flat feature rows)")
        val = inputs[0].meta.get("val")
        if not isinstance(val, torch.Tensor) or val.dim() not in (2, 4):
            raise ModelImportError(f"{self.source} takes inputs of shape {getattr(val, 'shape', '?')}; lowbit imports "
                                   "[batch, C, H, W] images or [batch, features] rows")
        source_shape = tuple(int(d) for d in val.shape[1:])
        for node in graph.nodes:
            if node.op == "placeholder":
                env[node] = _Act(source_shape) if node is inputs[0] else self.constants.get(node.name, _META)
                if node is inputs[0]:
                    self.current, self.producer = env[node], node.name
            elif node.op == "call_function":
                env[node] = self.call(node, env)
            elif node.op == "output":
                self.finish(node, env)
            else:
                raise self.refuse(node, f"is a {node.op} node, which the torch importer does not read")
        image = len(source_shape) == 3
        input_shape = (source_shape[1], source_shape[2], source_shape[0]) if image else source_shape
        layers = _relu_before_pool(self.layers)
        try:
            with torch.random.fork_rng(devices=[]):  # creating layers draws initial weights: keep the user's RNG
                built = FloatGraph(input_shape, [(n, make()) for n, make in layers])
        except GraphError as e:
            raise ModelImportError(f"{self.source}: lowbit cannot build its float graph from these layers: {e}") \
                from None
        try:
            built.stages()
        except GraphError as e:
            raise ModelImportError(f"{self.source}: lowbit cannot group these layers into its integer layers: {e}") \
                from None
        return source_shape, built.eval()

    def finish(self, node, env) -> None:
        outs = list(node.args[0]) if isinstance(node.args[0], (tuple, list)) else [node.args[0]]
        if len(outs) != 1:
            raise ModelImportError(f"{self.source} returns {len(outs)} outputs; lowbit imports models returning one "
                                   "tensor of logits [batch, classes]")
        out = env.get(outs[0])
        if not isinstance(out, _Act) or out is not self.current:
            raise ModelImportError(f"{self.source}: the output ({outs[0]}) is not the end of the chain of layers")
        if len(out.shape) != 1:
            raise ModelImportError(f"{self.source} returns per-example outputs of shape {out.shape}; lowbit imports "
                                   "models returning logits [batch, classes]")

    # -- one node -------------------------------------------------------------------------
    def call(self, node, env):
        target = node.target
        packet = target.overloadpacket if isinstance(target, torch._ops.OpOverload) else None
        if packet in _META_OPS:
            return _META
        look = lambda a: env[a] if isinstance(a, torch.fx.Node) else a  # noqa: E731
        args = torch.fx.node.map_aggregate(node.args, look)
        kwargs = torch.fx.node.map_aggregate(node.kwargs, look)
        acts = []
        torch.fx.node.map_aggregate((args, kwargs), lambda v: acts.append(v) if isinstance(v, (_Act, _Multi)) else v)
        if not acts:
            return self.fold_constant(node, args, kwargs)
        if target is operator.getitem:
            return self.getitem(node, args)
        handler = _HANDLERS.get(packet)
        if handler is None:
            hint = f" ({_HINTS[packet]})" if packet in _HINTS else ""
            raise self.refuse(node, f"is not supported{hint}")
        if len({id(a) for a in acts}) > 1:
            names = [a.name for a in node.all_input_nodes if isinstance(env[a], (_Act, _Multi))]
            raise self.refuse(node, f"combines two activations ({', '.join(map(repr, names))}): a residual/skip "
                                    "connection or a join of two paths; lowbit's networks are one chain of layers")
        if acts[0] is not self.current:
            src = next(a.name for a in node.all_input_nodes if env[a] is acts[0])
            raise self.refuse(node, f"reads {src!r}, not the latest layer's output ({self.producer!r}): a branch "
                                    "(a residual/skip connection or parallel paths); lowbit's networks are one chain")
        if _op_name(target) not in self.ops:
            self.ops.append(_op_name(target))
        out = handler(self, node, _bind(target, args, kwargs))
        self.producer = node.name
        return out

    def fold_constant(self, node, args, kwargs):
        """An op on parameters only (``permute(weight)`` of a decomposed linear, a weight-norm
        reparametrization): computed once, here, exactly as torch would."""
        target = node.target
        if isinstance(target, torch._ops.OpOverload) and torch.Tag.nondeterministic_seeded in target.tags:
            raise self.refuse(node, "draws random numbers")
        bad = []
        torch.fx.node.map_aggregate((args, kwargs), lambda v: bad.append(v) if v is _META else v)
        if bad:
            raise self.refuse(node, "computes a tensor from the input's shape")
        try:
            with torch.no_grad():
                return target(*args, **kwargs)
        except Exception as e:  # noqa: BLE001 - any failure of the user's op is reported as such
            raise self.refuse(node, f"failed on the model's constants ({type(e).__name__}: {e})") from None

    def getitem(self, node, args):
        value, index = args
        if isinstance(value, _Multi) and index == 0:
            self.current = value.act
            return value.act
        if isinstance(value, _Multi) and not node.users:
            return _META  # statistics or indices nothing reads (a loaded program keeps such nodes)
        what = value.what if isinstance(value, _Multi) else "an activation"
        raise self.refuse(node, f"uses item {index!r} of {what}: only the activation itself is supported")


def _bind(target, args, kwargs) -> dict:
    """The op's arguments by schema name, defaults filled in."""
    bound = {}
    for i, a in enumerate(target._schema.arguments):
        if i < len(args):
            bound[a.name] = args[i]
        elif a.name in kwargs:
            bound[a.name] = kwargs[a.name]
        else:
            bound[a.name] = a.default_value if a.has_default_value() else None
    return bound


def _relu_before_pool(layers):
    """``max-pool, relu`` → ``relu, max-pool`` (exact: max commutes with a non-decreasing function);
    lowbit's stages pool the activation's codes."""
    out = list(layers)
    for i in range(len(out) - 1):
        if isinstance(out[i][1], _Pending) and out[i][1].kind is MaxPool2d and out[i + 1][1].kind is ReLU:
            out[i], out[i + 1] = out[i + 1], out[i]
    return out


class _Pending:
    """A layer to create once the list is final (inside the RNG fork): its class, arguments and tensors."""

    def __init__(self, kind, *args, tensors=None, **kwargs):
        self.kind, self.args, self.kwargs, self.tensors = kind, args, kwargs, tensors or {}

    def __call__(self):
        layer = self.kind(*self.args, **self.kwargs)
        with torch.no_grad():
            for name, value in ((n, v) for n, v in self.tensors.items() if v is not None):
                getattr(layer, name).copy_(value.reshape(getattr(layer, name).shape))
        return layer


# ---- handlers: (walker, node, bound args) -> the new activation --------------------------------
def _linear(w: _Walker, node, weight: torch.Tensor, bias: torch.Tensor | None):
    x = w.current
    if len(x.shape) != 1:
        raise w.refuse(node, f"applies a dense layer to a tensor of per-example shape {x.shape}; flatten it to "
                             "[batch, -1] first")
    if weight.dim() != 2 or weight.shape[1] != x.shape[0]:
        raise w.refuse(node, f"has a weight of shape {tuple(weight.shape)} for {x.shape[0]} inputs")
    if x.pending_chw is not None:  # columns in the source's (c, h, w) order → lowbit's (h, w, c)
        weight = nchw_columns(weight, x.pending_chw)
    out = weight.shape[0]
    if bias is not None and bias.numel() != out:
        raise w.refuse(node, f"has a bias of {bias.numel()} values for {out} outputs")
    return w.add("fc", _Pending(Linear, int(weight.shape[1]), int(out), bias=bias is not None,
                                tensors={"weight": weight, "bias": bias}), _Act((out,)), weighted=True)


def _h_linear(w, node, a):
    return _linear(w, node, w.const(node, a["weight"], "weight"),
                   None if a["bias"] is None else w.const(node, a["bias"], "bias"))


def _h_addmm(w, node, a):
    if a["beta"] != 1 or a["alpha"] != 1:
        raise w.refuse(node, f"scales its terms (beta={a['beta']}, alpha={a['alpha']})")
    if not isinstance(a["mat1"], _Act):
        raise w.refuse(node, "multiplies a constant by the activation (the activation must come first)")
    return _linear(w, node, w.const(node, a["mat2"], "weight").t(), w.const(node, a["self"], "bias").reshape(-1))


def _h_mm(w, node, a):
    first, second = (a["self"], a["other"]) if "other" in a else (a["self"], a["mat2"])
    if not isinstance(first, _Act) or (isinstance(second, torch.Tensor) and second.dim() != 2):
        raise w.refuse(node, "is not an activation times a constant 2-D matrix")
    return _linear(w, node, w.const(node, second, "weight").t(), None)


def _h_add(w, node, a):
    x, c = (a["self"], a["other"]) if isinstance(a["self"], _Act) else (a["other"], a["self"])
    alpha = a.get("alpha", 1)
    if w.last_weighted_out is not x or not isinstance(c, torch.Tensor):
        raise w.refuse(node, "adds to an activation other than a bias right after a linear or conv layer")
    pending = w.layers[-1][1]
    channels = x.shape[0]
    bias_shapes = [(channels,), (1, channels)] if len(x.shape) == 1 else [(channels, 1, 1), (1, channels, 1, 1)]
    if tuple(c.shape) not in bias_shapes:
        raise w.refuse(node, f"adds a constant of shape {tuple(c.shape)}, not a per-channel bias {bias_shapes[0]}")
    extra = c.detach().float().reshape(-1) * alpha
    old = pending.tensors.get("bias")
    pending.tensors["bias"] = extra if old is None else old + extra
    pending.kwargs["bias"] = True
    return x  # the same activation: a later bias add still lands in this layer's bias


def _h_conv(w, node, a):
    """``aten.conv2d`` (padding an int pair or 'valid'/'same') and ``aten.convolution`` (decomposed)."""
    x, stride, padding, dilation, groups = w.current, a["stride"], a["padding"], a["dilation"], a["groups"]
    if len(x.shape) != 3:
        raise w.refuse(node, f"convolves a tensor of per-example shape {x.shape}; it needs [batch, C, H, W] images")
    weight = w.const(node, a["weight"], "weight")
    if a.get("transposed") or any(_pair(a.get("output_padding") or 0)):
        raise w.refuse(node, "is a transposed convolution")
    if groups != 1:
        raise w.refuse(node, f"is a grouped convolution (groups={groups}); only groups=1 is supported")
    if _pair(dilation) != (1, 1):
        raise w.refuse(node, f"is a dilated convolution (dilation={list(dilation)}); only dilation 1 is supported")
    kh, kw = int(weight.shape[2]), int(weight.shape[3])
    if isinstance(padding, str):
        if padding == "valid":
            padding = (0, 0)
        elif padding == "same" and kh % 2 and kw % 2:
            padding = (kh // 2, kw // 2)  # for odd kernels (stride 1, torch's rule) 'same' pads k//2 each side
        else:
            raise w.refuse(node, f"uses padding={padding!r} with a {kh}x{kw} kernel (asymmetric padding)")
    out = tuple(int(d) for d in node.meta["val"].shape[1:])
    bias = None if a["bias"] is None else w.const(node, a["bias"], "bias")
    return w.add("conv", _Pending(Conv2d, int(weight.shape[1]), int(weight.shape[0]), (kh, kw), _pair(stride),
                                  _pair(padding), bias=bias is not None, tensors={"weight": weight, "bias": bias}),
                 _Act(out), weighted=True)


def _h_batch_norm(w, node, a):
    x = w.current
    if a.get("training"):
        raise w.refuse(node, "is a batch norm in training mode (it normalizes with each batch's statistics); "
                             "export the module after model.eval()")
    if a.get("running_mean") is None or a.get("running_var") is None:
        raise w.refuse(node, "is a batch norm without running statistics (track_running_stats=False)")
    if x.pending_chw is not None and x.pending_chw[0] > 1 and x.pending_chw[1] * x.pending_chw[2] > 1:
        raise w.refuse(node, "normalizes the features of a flattened NCHW image; put it before the flatten")
    channels = x.shape[0]
    mean, var = w.const(node, a["running_mean"], "running mean"), w.const(node, a["running_var"], "running variance")
    weight = torch.ones(channels) if a["weight"] is None else w.const(node, a["weight"], "weight")
    bias = torch.zeros(channels) if a["bias"] is None else w.const(node, a["bias"], "bias")
    if mean.numel() != channels:
        raise w.refuse(node, f"has {mean.numel()} channels for an input of {channels}")
    eps = float(a["eps"])
    momentum = a["momentum"] if isinstance(a["momentum"], float) and 0 < a["momentum"] <= 1 else 0.1
    out = w.add("bn", _Pending(BatchNorm, channels, eps, momentum, tensors={
        "weight": weight, "bias": bias, "running_mean": mean, "running_var": var}), _Act(x.shape, x.pending_chw))
    return out if node.target.overloadpacket is aten.batch_norm else _Multi(out, "a batch norm's statistics")


def _h_relu(w, node, a):
    return w.add("relu", _Pending(ReLU), _Act(w.current.shape, w.current.pending_chw))


def _h_max_pool2d(w, node, a):
    x = w.current
    if len(x.shape) != 3:
        raise w.refuse(node, f"pools a tensor of per-example shape {x.shape}; it needs [batch, C, H, W] images")
    kernel = _pair(a["kernel_size"])
    stride = _pair(a["stride"]) if a["stride"] else kernel
    if any(_pair(a["padding"])):
        raise w.refuse(node, f"pads its input (padding={list(_pair(a['padding']))}); only max-pool without padding "
                             "is supported")
    if _pair(a["dilation"]) != (1, 1):
        raise w.refuse(node, f"is a dilated max-pool (dilation={list(_pair(a['dilation']))})")
    if a["ceil_mode"]:
        raise w.refuse(node, "uses ceil_mode=True; only floor mode (ceil_mode=False) is supported")
    val = node.meta["val"]
    out = tuple(int(d) for d in (val[0] if isinstance(val, (tuple, list)) else val).shape[1:])
    out = w.add("pool", _Pending(MaxPool2d, kernel, stride), _Act(out))
    return out if node.target.overloadpacket is aten.max_pool2d else _Multi(out, "a max-pool's indices")


def _flatten_to(w, node, out_shape):
    x = w.current
    if tuple(out_shape) != (math.prod(x.shape),):
        raise w.refuse(node, f"reshapes per-example shape {x.shape} to {tuple(out_shape)}; only a flatten to "
                             "[batch, -1] is supported")
    if len(x.shape) != 1:  # (already flat: nothing to do)
        w.add("flatten", _Pending(Flatten), _Act(out_shape, x.shape))
    return w.current


def _h_flatten(w, node, a):
    rank = len(w.current.shape) + 1
    start, end = a["start_dim"] % rank, a["end_dim"] % rank
    if start != 1 or end != rank - 1:
        raise w.refuse(node, f"flattens dimensions {a['start_dim']}..{a['end_dim']}; only torch.flatten(x, 1) "
                             "(all but the batch) is supported")
    return _flatten_to(w, node, (math.prod(w.current.shape),))


def _h_view(w, node, a):
    val, x_rank = node.meta["val"], len(w.current.shape) + 1
    source = node.all_input_nodes[0].meta.get("val")
    if val.dim() != 2 or (source is not None and str(val.shape[0]) != str(source.shape[0])):
        raise w.refuse(node, f"reshapes a {x_rank}-D tensor to shape {list(a.get('size') or a.get('shape'))}; only "
                             "a flatten to [batch, -1] is supported")
    return _flatten_to(w, node, (int(val.shape[1]),))


def _h_dropout(w, node, a):
    x = w.current
    if a.get("train"):
        raise w.refuse(node, "is a dropout in training mode (it zeroes random inputs); export after model.eval()")
    p = a.get("p")
    if node.target.overloadpacket is aten.dropout and isinstance(p, float) and 0 < p < 1:
        w.add("drop", _Pending(Dropout, p), _Act(x.shape, x.pending_chw))
    return _Multi(w.current, "a dropout's mask") if node.target.overloadpacket is aten.native_dropout else w.current


def _h_identity(w, node, a):
    val = node.meta.get("val")
    if isinstance(val, torch.Tensor) and val.dtype != torch.float32:
        raise w.refuse(node, f"converts the activation to {val.dtype}")
    return w.current  # the same activation, unchanged


_HANDLERS = {aten.linear: _h_linear, aten.addmm: _h_addmm, aten.mm: _h_mm, aten.matmul: _h_mm, aten.add: _h_add,
             aten.conv2d: _h_conv, aten.convolution: _h_conv, aten.batch_norm: _h_batch_norm,
             aten._native_batch_norm_legit_no_training: _h_batch_norm, aten._native_batch_norm_legit: _h_batch_norm,
             aten.native_batch_norm: _h_batch_norm, aten.relu: _h_relu, aten.relu_: _h_relu,
             aten.max_pool2d: _h_max_pool2d, aten.max_pool2d_with_indices: _h_max_pool2d, aten.flatten: _h_flatten,
             aten.view: _h_view, aten.reshape: _h_view, aten._unsafe_view: _h_view,
             **{op: _h_dropout for op in _DROPOUT_OPS}, **{op: _h_identity for op in _IDENTITY_OPS}}


# ---- public API ----------------------------------------------------------------------------
def _logits(y) -> torch.Tensor:
    y = y[0] if isinstance(y, (tuple, list)) and len(y) == 1 else y
    if not isinstance(y, torch.Tensor):
        raise ModelImportError(f"the model returned {type(y).__name__}, not a tensor of logits")
    return y


def _first_line(e: Exception) -> str:
    text = str(e).strip()
    return text.splitlines()[0] if text else "(no message)"


def _batched(run, size: int = _REFERENCE_CHUNK, pad: bool = False):
    """``run`` (a torch callable) as the reference ``float32 [n, *shape] → logits`` numpy function, in
    chunks of ``size``; with ``pad`` the last chunk is zero-padded to ``size`` (an exported program
    takes its own fixed batch size, or a dynamic one whose range may exclude a small last chunk)."""

    @torch.no_grad()
    def reference(x: np.ndarray) -> np.ndarray:
        x = torch.as_tensor(np.ascontiguousarray(x, dtype=np.float32))
        outs = []
        for i in range(0, len(x), size):
            part = x[i:i + size]
            k = len(part)
            if pad and k < size:
                part = torch.cat([part, part.new_zeros(size - k, *part.shape[1:])])
            outs.append(_logits(run(part))[:k].float().numpy())
        return np.concatenate(outs) if outs else np.zeros((0,), np.float32)

    return reference


def convert_program(program, *, source: str, reference=None) -> Imported:
    """A ``torch.export`` ExportedProgram (exported in eval mode) as an :class:`~.common.Imported`; its
    ``reference`` runs ``program.module()`` (in chunks of the program's batch size when that is fixed)
    unless ``reference`` is given. ModelImportError for anything outside :data:`SUPPORTED`."""
    walker = _Walker(program, source)
    source_shape, graph = walker.walk()
    if reference is None:
        val = next(n.meta["val"] for n in program.graph.nodes if n.op == "placeholder" and n.name in walker.user_inputs)
        fixed = int(val.shape[0]) if isinstance(val.shape[0], int) else None
        reference = _batched(program.module(), fixed or _REFERENCE_CHUNK, pad=True)
    return Imported(graph, source_shape, reference, source, walker.ops)


def _export(model: nn.Module, example: torch.Tensor, what: str):
    """``torch.export.export`` in eval mode; a failure as a ModelImportError naming the module's class and,
    when torch shows it, the line of the user's code where tracing stopped."""
    shapes_log = logging.getLogger("torch.fx.experimental.symbolic_shapes")
    level, printed = shapes_log.level, io.StringIO()
    shapes_log.setLevel(logging.ERROR)  # its warning on a data-dependent guard repeats what our error says
    try:
        with contextlib.redirect_stderr(printed):  # a failed export prints its partial graph there
            program = torch.export.export(model, (example,))
    except Exception as e:  # noqa: BLE001 - whatever stops torch.export, the user needs the reason
        lines = [ln.strip()[2:] for ln in printed.getvalue().splitlines() if ln.strip().startswith("# File:")]
        raise ModelImportError(
            f"torch.export could not trace {what} on an input of shape {tuple(example.shape)}: {type(e).__name__}: "
            f"{_first_line(e)}{f' ({lines[-1]})' if lines else ''}. lowbit imports a forward that is one fixed "
            "chain of layers for that input shape (no data-dependent control flow such as `if x.sum() > 0`)") \
            from None
    finally:
        shapes_log.setLevel(level)
    sys.stderr.write(printed.getvalue())  # what a successful export printed (warnings) is the user's to see
    return program


def convert_torch(module: nn.Module, example_input: torch.Tensor, *, source: str = "torch module") -> Imported:
    """Export ``module`` (a deep copy, eval mode, float32) with ``torch.export`` on ``example_input``
    (``[batch, C, H, W]`` or ``[batch, F]``) and convert its ATen graph (see the module docstring).
    ``reference`` runs the copy (torch.no_grad, batched); the module passed in is not modified."""
    if not isinstance(module, nn.Module):
        raise ModelImportError(f"{source} must be a torch.nn.Module, not {type(module).__name__}")
    if not isinstance(example_input, torch.Tensor):
        raise ModelImportError(f"the example input must be a torch.Tensor, not {type(example_input).__name__}")
    model = copy.deepcopy(module).float().eval()
    what = f"{source} ({type(module).__module__}.{type(module).__qualname__})"
    program = _export(model, example_input.detach().float(), what)
    return convert_program(program, source=what, reference=_batched(model))


def from_torch(module: nn.Module, example_input: torch.Tensor, *, preprocessing: Preprocessing = Preprocessing(),
               check_pixels=None, tolerance: float = CHECK_TOLERANCE) -> FloatGraph:
    """``module`` as a FloatGraph taking lowbit's NHWC ``pixel / 256`` input, checked against the module.

    ``preprocessing`` is how the module's input comes from uint8 pixels (``pixel / 255`` by default,
    optionally ``Normalize(mean, std)``): it is folded into the first weighted layer. The graph is
    checked against the module's own forward pass on ``check_pixels`` (uint8 rows ``[n, H·W·C]`` in
    NHWC order, as lowbit's datasets hold them); when None, on 256 seeded random uint8 images of the
    right size — pass real images for the real check. ModelImportError if they disagree by more than
    ``tolerance · max|logit|``. The check's figure is attached as the plain attribute
    ``graph.import_check = {"source": ..., "images": n, "max_rel_diff": rel}``.
    """
    imported = convert_torch(module, example_input)
    if check_pixels is None:
        features = math.prod(imported.graph.input_shape)
        check_pixels = np.random.default_rng(0).integers(0, 256, (DEFAULT_RANDOM_CHECK, features), dtype=np.uint8)
    graph, rel = finish_import(imported, check_pixels, preprocessing, tolerance=tolerance)
    graph.import_check = {"source": imported.source, "images": int(len(check_pixels)), "max_rel_diff": rel}
    return graph
