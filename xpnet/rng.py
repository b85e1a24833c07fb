"""Random numbers drawn on a device, from a seed the caller controls.

The Array API standard has no random module, so each backend uses its own generator: NumPy's
``Generator``, CuPy's ``Generator`` (on a counter-based Philox bit generator, on the GPU), a
``torch.Generator`` on the tensor's device, a ``jax.random`` key on JAX (split at each draw;
the key is the generator's whole state, which is how a compiled training step takes it in and
hands it back). Backends without one (array-api-strict) draw on the host and send the result:
they exist to test code, not to be fast. Streams differ between backends: the same seed is
reproducible on one backend, not bit-identical across backends.

:meth:`Generator.reseed` restarts a generator at the stream of ``(seed, *words)`` without the
cost of a new generator (a training step's streams are reseeded before every step): a
``SeedSequence`` spawn key on the host, ``manual_seed`` on torch, ``jax.random.fold_in`` of the
words on JAX, and on CuPy a new Philox bit generator, whose cuRAND states start in O(1) each
(XORWOW's skip ahead to each state's subsequence is what makes its initialisation slow).
CuPy seeds cuRAND with 32 bits of the SeedSequence (cupy/random/_bit_generator.pyx), so over
``n`` reseeds about ``n**2 / 2**33`` pairs of streams coincide there; NumPy's spawn keys, torch's
64-bit seeds and JAX's folded keys do not have that limit.

On CuPy no draw waits for the GPU. Its legacy ``RandomState.randint`` reads a count back to
the host (``int(csum[-1])`` in ``_get_indices``, cupy/random/_generator.py) whenever the
range is not a power of two, as 60000 is: a sync per mini-batch. The ``Generator`` API draws
integers by rejection inside one kernel (cupy/random/_generator_api.pyx, ``integers``).
"""

from __future__ import annotations

import functools
from typing import Any

import numpy as np

from .backend import Array, Device
from .backend import device as resolve_device

__all__ = ["Generator"]

# cuRAND device states of a CuPy generator. Output element i comes from state i % this
# (cupy/random/cupy_distributions.cu, execute_dist); CuPy's default scales it with the GPU's
# multiprocessor count, which would make a seed's stream depend on the GPU model.
CUPY_GENERATOR_STATES = 1 << 17


@functools.cache
def _jax_fold() -> Any:
    """``(seed, words) -> key``: the key of a 32-bit seed with each word folded in, compiled once
    per number of words; it runs where the seed lives (the words come from the host)."""
    import jax

    @jax.jit
    def fold(seed: Array, words: Array) -> Array:
        key = jax.random.key(seed[0])
        for index in range(words.shape[0]):
            key = jax.random.fold_in(key, words[index])
        return key
    return fold


class Generator:
    """A seeded source of random arrays that are created directly on ``device``."""

    def __init__(self, device: str | Device = "cpu", seed: int | None = None) -> None:
        self.device = resolve_device(device)
        self.seed = seed
        # the root of every stream :meth:`reseed` derives (fresh OS entropy without a seed)
        self._entropy = np.random.SeedSequence(seed).entropy
        backend = self.device.backend
        self._on_torch = backend == "torch" and self.device.array_device.type != "meta"
        if self._on_torch:
            import torch

            self._source = torch.Generator(device=self.device.array_device)
        elif backend == "jax":
            import jax

            # 32 bits of the seed's SeedSequence: jax.random.key truncates wider seeds
            # without a word while jax_enable_x64 is off (2**40 gives the key of 0)
            self._jax_seed = jax.device_put(np.random.SeedSequence(self._entropy).generate_state(1),
                                            self.device.array_device)
        self.reseed()

    def reseed(self, *words: int) -> None:
        """Restart at the stream of ``(seed, *words)`` (non-negative integers; 32 bits each on
        JAX): the same words give the same numbers, on any process, whatever was drawn before."""
        backend = self.device.backend
        if backend == "jax":
            self._source = _jax_fold()(self._jax_seed, np.asarray(words, dtype=np.uint32))
            return
        sequence = np.random.SeedSequence(self._entropy, spawn_key=words)
        if backend == "cupy":
            random = self.device.xp_library.random
            # its state lives on the current GPU, and CuPy refuses draws from another one
            with self.device:
                self._source = random.Generator(
                    random.Philox4x3210(sequence, size=CUPY_GENERATOR_STATES))
        elif self._on_torch:
            self._source.manual_seed(int(sequence.generate_state(1, np.uint64)[0]))
        else:  # NumPy itself, the host stand-in for array-api-strict, and shape-only meta
            self._source = np.random.default_rng(sequence)

    @property
    def key(self) -> Array:
        """A JAX generator's state, its ``jax.random`` key (what a compiled step passes in and out)."""
        if self.device.backend != "jax":
            raise AttributeError(f"a generator on {self.device.name} has no jax.random key")
        return self._source

    @key.setter
    def key(self, key: Array) -> None:
        self._source = key

    def _jax_key(self) -> Array:
        """A fresh key for one draw; the generator keeps the other half of the split."""
        import jax

        self._source, draw = jax.random.split(self._source)
        return draw

    def _torch_kwargs(self, dtype: Any) -> dict[str, Any]:
        return {"generator": self._source if self._on_torch else None,
                "device": self.device.array_device, "dtype": self.device.dtype(dtype)}

    def random(self, shape: tuple[int, ...], dtype: Any = "float32") -> Array:
        """Uniform samples in [0, 1)."""
        if self.device.backend == "torch":
            import torch

            return torch.rand(shape, **self._torch_kwargs(dtype))
        if self.device.backend == "jax":
            import jax

            return jax.random.uniform(self._jax_key(), shape, dtype=self.device.dtype(dtype))
        if self.device.backend == "cupy":
            with self.device:
                return self._source.random(shape, dtype=self.device.dtype(dtype))
        return self.device.send(self._source.random(shape), dtype)

    def normal(self, shape: tuple[int, ...], dtype: Any = "float32") -> Array:
        """Standard normal samples."""
        if self.device.backend == "torch":
            import torch

            return torch.randn(shape, **self._torch_kwargs(dtype))
        if self.device.backend == "jax":
            import jax

            return jax.random.normal(self._jax_key(), shape, dtype=self.device.dtype(dtype))
        if self.device.backend == "cupy":
            with self.device:
                return self._source.standard_normal(shape, dtype=self.device.dtype(dtype))
        return self.device.send(self._source.standard_normal(shape), dtype)

    def integers(self, high: int, size: int) -> Array:
        """``size`` int64 indices drawn uniformly from ``[0, high)``, with replacement."""
        if self.device.backend == "torch":
            import torch

            return torch.randint(high, (size,), **self._torch_kwargs("int64"))
        if self.device.backend == "jax":
            import jax

            return jax.random.randint(self._jax_key(), (size,), 0, high,
                                      dtype=self.device.dtype("int64"))
        if self.device.backend == "cupy":
            with self.device:
                return self._source.integers(0, high, size=size, dtype="int64")
        return self.device.send(self._source.integers(0, high, size=size), "int64")

    def permutation(self, n: int) -> Array:
        """A random ordering of ``0 .. n-1`` as int64."""
        if self.device.backend == "torch":
            import torch

            return torch.randperm(n, **self._torch_kwargs("int64"))
        if self.device.backend == "jax":
            import jax

            return self.device.xp.astype(jax.random.permutation(self._jax_key(), n),
                                         self.device.dtype("int64"))
        if self.device.backend == "cupy":
            # CuPy's Generator has no permutation: sort random keys, as its RandomState does
            # (cupy/random/_generator.py, _permutation); float64 keys make ties negligible
            with self.device:
                return self.device.xp_library.argsort(self._source.random(n, dtype="float64"))
        return self.device.send(self._source.permutation(n), "int64")
