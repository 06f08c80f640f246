"""A user's classifier as an ONNX file: its checks, normalisation wrapper and differentiable copy.

The contract of every bundle's ``classifier.onnx``: one input, float32 NCHW images in [0, 1]
after the bundle's preprocessing, shape (B, C, H, W) with a free batch axis; one output, (B, classes)
logits. Normalisation is inside the graph: ``wrap_normalisation`` prepends ``(x - mean) / std`` to a
graph that expects normalised input.

The service runs the ONNX file itself (onnxruntime). The attacks and the evaluation need gradients,
so ``differentiable_copy`` rebuilds the graph as a ``torch.nn.Module`` with onnx2torch (never pickle: the
weights come from the graph's initializers) and checks its logits against onnxruntime.
"""
from __future__ import annotations

from pathlib import Path

import numpy as np
import onnx
import onnxruntime as ort
import torch
from onnx import helper, numpy_helper, version_converter

PARITY_TOLERANCE = 1e-4  # max |delta logit| between the differentiable copy and onnxruntime
ONNX2TORCH_OPSET = 17  # graphs of a newer opset are converted down before onnx2torch reads them


class OnnxClassifierError(ValueError):
    """The ONNX file does not meet the classifier contract; the message says what to fix."""


def check_classifier(model: onnx.ModelProto, input_shape: tuple[int, int, int], num_classes: int,
                     source: str = "the ONNX file") -> str:
    """Check ``model`` against the contract for images of ``input_shape`` (C, H, W) and ``num_classes``
    classes; returns the input's name. Raises OnnxClassifierError naming the mismatch."""
    try:
        onnx.checker.check_model(model)
    except onnx.checker.ValidationError as err:
        raise OnnxClassifierError(f"{source} is not a valid ONNX model: {str(err).splitlines()[0]}") from None
    initializers = {i.name for i in model.graph.initializer}
    inputs = [i for i in model.graph.input if i.name not in initializers]
    if len(inputs) != 1:
        raise OnnxClassifierError(f"{source} has {len(inputs)} inputs ({', '.join(i.name for i in inputs)}); "
                                  "a classifier takes one image input")
    if len(model.graph.output) != 1:
        raise OnnxClassifierError(f"{source} has {len(model.graph.output)} outputs; a classifier gives one: logits")
    dims = _dims(inputs[0])
    if len(dims) != 4:
        raise OnnxClassifierError(f"{source}: input {inputs[0].name!r} has rank {len(dims)}; expected (B, C, H, W)")
    for axis, (got, want) in enumerate(zip(dims[1:], input_shape), start=1):
        if got is not None and got != want:
            raise OnnxClassifierError(f"{source}: input {inputs[0].name!r} has shape {_shown(dims)}, but the images "
                                      f"are (B, {', '.join(map(str, input_shape))}); axis {axis} differs")
    out = _dims(model.graph.output[0])
    if len(out) != 2:
        raise OnnxClassifierError(f"{source}: output has rank {len(out)}; expected 2-D logits (B, classes)")
    if out[1] is not None and out[1] != num_classes:
        raise OnnxClassifierError(f"{source} gives {out[1]} logits per image, but {num_classes} class names were given")
    return inputs[0].name


def _dims(value: onnx.ValueInfoProto) -> list[int | None]:
    """A tensor's dimensions, None for a symbolic or unknown one."""
    return [d.dim_value if d.HasField("dim_value") else None for d in value.type.tensor_type.shape.dim]


def _shown(dims: list[int | None]) -> str:
    return "(" + ", ".join("?" if d is None else str(d) for d in dims) + ")"


def wrap_normalisation(model: onnx.ModelProto, mean: tuple[float, ...], std: tuple[float, ...]) -> onnx.ModelProto:
    """A copy of ``model`` whose input takes [0, 1] images: ``(x - mean) / std`` per channel, then the original graph."""
    wrapped = onnx.ModelProto()
    wrapped.CopyFrom(model)
    graph = wrapped.graph
    initializers = {i.name for i in graph.initializer}
    original = next(i for i in graph.input if i.name not in initializers)
    raw = f"{original.name}_unnormalised"
    shape = (1, len(mean), 1, 1)
    graph.initializer.extend([numpy_helper.from_array(np.asarray(mean, np.float32).reshape(shape), f"{raw}_mean"),
                              numpy_helper.from_array(np.asarray(std, np.float32).reshape(shape), f"{raw}_std")])
    centred = f"{raw}_centred"
    nodes = [helper.make_node("Sub", [raw, f"{raw}_mean"], [centred]),
             helper.make_node("Div", [centred, f"{raw}_std"], [original.name])]
    old_nodes = list(graph.node)
    del graph.node[:]
    graph.node.extend(nodes + old_nodes)
    new_input = onnx.ValueInfoProto()
    new_input.CopyFrom(original)
    new_input.name = raw
    inputs = [new_input if i.name == original.name else i for i in graph.input]
    del graph.input[:]
    graph.input.extend(inputs)
    return wrapped


def _for_onnx2torch(model: onnx.ModelProto) -> onnx.ModelProto:
    """``model`` in the form onnx2torch reads: at most opset 17, and Reshape's ``allowzero=1`` dropped where
    the shape is a constant without zeros (the two settings then mean the same)."""
    opset = max((o.version for o in model.opset_import if o.domain in ("", "ai.onnx")), default=ONNX2TORCH_OPSET)
    if opset > ONNX2TORCH_OPSET:
        model = version_converter.convert_version(model, ONNX2TORCH_OPSET)
    constants = {i.name: numpy_helper.to_array(i) for i in model.graph.initializer}
    for node in model.graph.node:
        if node.op_type != "Reshape":
            continue
        for attribute in node.attribute:
            shape = constants.get(node.input[1])
            if attribute.name == "allowzero" and attribute.i == 1 and shape is not None and not (shape == 0).any():
                attribute.i = 0
    return model


def differentiable_copy(onnx_path: Path, input_shape: tuple[int, int, int]) -> torch.nn.Module:
    """The graph of ``onnx_path`` as a frozen ``torch.nn.Module`` in eval mode, (B, C, H, W) -> (B, classes),
    checked against onnxruntime on random images (max |delta logit| <= PARITY_TOLERANCE).

    Raises OnnxClassifierError when onnx2torch cannot convert the graph or the copy disagrees."""
    from onnx2torch import convert

    model = onnx.load(str(onnx_path))
    try:
        module = convert(_for_onnx2torch(model))
    except (NotImplementedError, ValueError, KeyError) as err:
        raise OnnxClassifierError(f"{onnx_path}: no differentiable copy can be made for the attacks and the "
                                  f"evaluation (onnx2torch: {err}); serving alone would work, evaluating would not") from None
    module.eval()
    for p in module.parameters():
        p.requires_grad_(False)
    delta = parity(module, onnx_path, input_shape)
    if delta > PARITY_TOLERANCE:
        raise OnnxClassifierError(f"{onnx_path}: the differentiable copy differs from onnxruntime by {delta:.2e} "
                                  f"> {PARITY_TOLERANCE:g} in the logits")
    return module


def parity(module: torch.nn.Module, onnx_path: Path, input_shape: tuple[int, int, int], batch: int = 3) -> float:
    """max |module(x) - onnxruntime(x)| over the logits of ``batch`` seeded random images."""
    session = ort.InferenceSession(str(onnx_path), providers=["CPUExecutionProvider"])
    probe = torch.rand(batch, *input_shape, generator=torch.Generator().manual_seed(1))
    with torch.no_grad():
        expected = module(probe).numpy()
    got = session.run(None, {session.get_inputs()[0].name: probe.numpy()})[0]
    return float(np.abs(got - expected).max())
