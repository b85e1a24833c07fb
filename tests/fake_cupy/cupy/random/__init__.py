"""``cupy.random``: the Generator API xpnet uses (cupy/random/_generator_api.pyx, v14.0.0).

A generator's state lives on the GPU current when it was made, and a draw runs a kernel there:
from another current device it meets ``_check_peer_access`` like any kernel. Streams come from
NumPy's PCG64 seeded alike, so a seed gives the same numbers on every fake GPU.
"""

from __future__ import annotations

from typing import Any

import numpy

from .. import _check_current, _wrap
from ..cuda import runtime


class Philox4x3210:
    """cupy.random.Philox4x3210(seed, *, size): counter-based cuRAND states on the current
    device, seeded (as _bit_generator.pyx does) by 32 bits of the SeedSequence of ``seed``: an
    int, None or a SeedSequence."""

    def __init__(self, seed: Any = None, *, size: int = 1 << 17) -> None:
        if not isinstance(seed, numpy.random.SeedSequence):
            seed = numpy.random.SeedSequence(seed)
        self.seed, self.size = int(seed.generate_state(1, numpy.uint32)[0]), size
        self.device_id = runtime.getDevice()
        runtime.create_context(self.device_id)


class Generator:
    def __init__(self, bit_generator: Philox4x3210) -> None:
        self.bit_generator = bit_generator
        self._rng = numpy.random.default_rng(bit_generator.seed)

    def _draw(self, values: numpy.ndarray, dtype: Any) -> Any:
        state = _wrap(numpy.empty(0), self.bit_generator.device_id)
        _check_current((state,))
        return _wrap(numpy.asarray(values, dtype=dtype))

    def random(self, size: Any = None, dtype: Any = numpy.float64, out: Any = None) -> Any:
        return self._draw(self._rng.random(size), dtype)

    def standard_normal(self, size: Any = None, dtype: Any = numpy.float64, out: Any = None) -> Any:
        return self._draw(self._rng.standard_normal(size), dtype)

    def integers(self, low: int, high: int | None = None, size: Any = None,
                 dtype: Any = numpy.int64, endpoint: bool = False) -> Any:
        return self._draw(self._rng.integers(low, high, size=size, endpoint=endpoint), dtype)
