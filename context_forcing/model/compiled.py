"""The chunk step's forward compiled by inductor with frozen weights: opt-in, for inference (issue 12).

`torch.compile(dynamic=False)` of the whole `CausalVideoDiT.forward` with inductor's `freezing` and
`cpp_wrapper`: the weights become constants (the fused q/k/v concatenation folded, GEMM weights prepacked),
the elementwise work between GEMMs becomes a few generated C++ loops and no Python runs between ops. On this
project's CPU the frozen benchmark config's chunks run 1.3-1.9x faster (docs/BENCHMARKS.md, "Compiled chunk
step").

Shapes are fixed: a session that compiles pads its context to the layout's budget (`SlowFastMemory.context`'s
`pad_to`) and allocates its [context | own] buffers before the chunk's first call, and every call returns K/V,
so every pass of every chunk, the first chunk included, runs one graph. It compiles once, on first use (~15 s
at the benchmark's width; inductor does not cache frozen graphs across processes).

Frozen means the weights are read when a graph compiles. `ensure_current` (a session calls it once per
chunk) notices any change of a parameter since (an optimiser step, `load_state_dict`, `.to()`) and compiles
afresh. Without a C++ compiler, or if compilation fails, it warns once and runs the eager forward.

Guards: dynamo re-checks before every call that its graph still fits the inputs (~0.3 ms per call here, about
1 ms of a ~12 ms batch-1 chunk). Only the guards on the input tensors are kept (shape, strides, dtype,
device); those on parameters (`ensure_current` covers them, once per chunk), on module attributes (read at
compilation, like the weights) and on the inputs' Python structure are dropped. That structure (which optional
inputs are None, list lengths, the mask's type, the latents' and context's shapes) is checked here instead,
one tuple per call; a change compiles afresh, with frozen weights, as the first compilation did.
"""

from __future__ import annotations

import dataclasses
import logging
import os
import shutil
import types
import warnings

import torch
import torch._inductor.config as inductor_config
from torch import Tensor

from context_forcing.conditioning import Conditioning
from context_forcing.model.attention import AttentionContext, ParameterKey, PromptContext
from context_forcing.model.dit import CausalVideoDiT, ModelOutput, PreparedFrames

log = logging.getLogger(__name__)
# compile-time notes that are no news here: the cached constants (dit.py, rope.py) are traced through their
# lru_cache, and the complex RoPE multiply runs as an eager op inside the graph (measured: cheaper than the
# real-valued form inductor would generate code for)
QUIET = (".*lru_cache.*", ".*code generation for complex operators.*")


def compiler_available() -> bool:
    """Whether inductor finds a C++ compiler (`$CXX`, else g++ / c++ / clang++ on PATH)."""
    names = [os.environ["CXX"]] if os.environ.get("CXX") else ["g++", "c++", "clang++"]
    return any(shutil.which(name) for name in names)


_COND_FIELDS = tuple(f.name for f in dataclasses.fields(Conditioning))


def _structure(x: Tensor, timesteps: Tensor, prompt: PromptContext, cond: Conditioning | None,
               context: AttentionContext | None, prepared: PreparedFrames | None) -> tuple:
    """What a graph is specialised on besides its input tensors' metadata (kept guards check that)."""
    return (x.shape, timesteps.shape, len(prompt.keys),
            None if cond is None else tuple(getattr(cond, name) is None for name in _COND_FIELDS),
            None if context is None else (len(context.keys), context.keys[0].shape, context.valid is None,
                                          context.allocated),
            None if prepared is None else type(prepared.mask))


def _forward(model: CausalVideoDiT, x: Tensor, timesteps: Tensor, prompt: PromptContext, temporal: Tensor,
             cond: Conditioning | None, context: AttentionContext | None, return_kv: bool,
             prepared: PreparedFrames | None) -> ModelOutput:
    return model(x, timesteps, prompt, temporal, cond, context=context, return_kv=return_kv,
                 prepared=prepared)


class CompiledForward:
    """`model.forward`'s chunk-step signature, compiled with frozen weights (see the module docstring)."""

    def __init__(self, model: CausalVideoDiT, cpp_wrapper: bool = True) -> None:
        """cpp_wrapper=False: the graphs called from generated Python (slower; profilers see each kernel)."""
        self.model, self.cpp_wrapper = model, cpp_wrapper
        self.eager_reason: str | None = None if compiler_available() else "no C++ compiler found"
        if self.eager_reason:
            warnings.warn(f"compile requested but {self.eager_reason}: running the eager forward",
                          stacklevel=2)
        self.compilations = 0  # graphs compiled: 1 + parameter changes + changes of the inputs' structure
        self._build()

    def _build(self) -> None:
        # a code object of its own: dynamo caches compiled graphs per code object, and a graph compiled for
        # other weights (another model, or these before a change) must never be reused
        code = _forward.__code__.replace(co_name=f"compiled_forward_{id(self)}_{self.compilations}")
        function = types.FunctionType(code, _forward.__globals__, code.co_name)
        # guards on the input tensors only (module docstring); a tensor guard that fails still recompiles
        options = {"cpp_wrapper": self.cpp_wrapper,
                   "guard_filter_fn": torch.compiler.keep_tensor_guards_unsafe}
        self._compiled = torch.compile(function, dynamic=False, options=options)
        self._params = tuple(self.model.parameters())
        self._key = ParameterKey(self._params)
        self._structure: tuple | None = None  # of the inputs the graph was compiled for (None: not yet)
        self.compilations += 1

    def ensure_current(self) -> None:
        """Compile afresh if any parameter changed since the graphs froze the weights (its storage or version
        counter; a parameter object replaced by another is not noticed)."""
        if not self._key.matches(self._params):
            log.info("the model's parameters changed since compilation: compiling afresh")
            self._build()

    def __call__(self, x: Tensor, timesteps: Tensor, prompt: PromptContext, temporal: Tensor,
                 cond: Conditioning | None = None, context: AttentionContext | None = None,
                 return_kv: bool = False, prepared: PreparedFrames | None = None) -> ModelOutput:
        if torch.is_grad_enabled():
            raise RuntimeError("a compiled forward freezes the weights: call it under torch.no_grad()")
        if self.eager_reason is None:
            structure = _structure(x, timesteps, prompt, cond, context, prepared)
            if self._structure is not None and structure != self._structure:
                log.info("the inputs' structure changed since compilation: compiling afresh")
                self._build()
            # always with K/V (computed anyway): denoising and commit passes share one graph
            args = (self.model, x, timesteps, prompt, temporal, cond, context, True, prepared)
            try:
                if self._structure is None:  # this call compiles
                    # freezing is read where torch.compile's `options` do not reach: patched around the call
                    with inductor_config.patch(freezing=True), warnings.catch_warnings():
                        for message in QUIET:
                            warnings.filterwarnings("ignore", message=message)
                        out = self._compiled(*args)
                    self._structure = structure
                else:
                    out = self._compiled(*args)
                return out if return_kv else ModelOutput(out.velocity, None)
            except Exception as error:  # noqa: BLE001 (any compiler failure: the eager forward still works)
                self.eager_reason = f"compilation failed ({type(error).__name__}: {error})"
                warnings.warn(f"{self.eager_reason}: running the eager forward", stacklevel=2)
        return _forward(self.model, x, timesteps, prompt, temporal, cond, context, return_kv, prepared)
