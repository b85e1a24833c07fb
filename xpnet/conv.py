"""Convolution and max pooling (book ch. 7) from strided window slices, on any array namespace.

Images are NCHW. ``im2col`` lays every filter-sized window of the (padded) input out as
one row, so a convolution becomes one matrix product. It is built from strided slices
``x[:, :, y:y_end:stride, x:x_end:stride]`` (one per filter position) stacked together,
never from index arrays or in-place writes, so it runs on every Array API backend; its
adjoint ``col2im`` sums the rows back with functional adds (``xpx.at(...).add``), which
accumulate correctly where windows overlap. The layers use the same slices directly
(see :class:`Convolution` and :class:`Pooling` for why not the book's row layout).
"""

from __future__ import annotations

import functools

import array_api_extra as xpx
from array_api_compat import device as array_device_of

from .backend import Array, namespace_of, on_input_device
from .errors import ConfigError, ShapeError
from .layers import Layer, check_input_dtype
from .validate import check_count, check_size

__all__ = ["conv_output_size", "im2col", "col2im", "Convolution", "Pooling"]


def conv_output_size(input_size: int, filter_size: int, stride: int = 1, pad: int = 0) -> int:
    """Number of window positions along one axis: ``(input + 2 pad - filter) // stride + 1``."""
    return (input_size + 2 * pad - filter_size) // stride + 1


def _check_geometry(layer: str, x_shape: tuple[int, ...], filter_h: int, filter_w: int,
                    stride: int, pad: int) -> tuple[int, int]:
    """The output height and width, or a :class:`ShapeError` when no window fits."""
    if len(x_shape) != 4:
        raise ShapeError(f"{layer} got input of shape {x_shape}; it takes images (N, C, H, W)")
    out_h = conv_output_size(x_shape[2], filter_h, stride, pad)
    out_w = conv_output_size(x_shape[3], filter_w, stride, pad)
    if out_h < 1 or out_w < 1:
        raise ShapeError(f"{layer}: a {filter_h}x{filter_w} window does not fit images of size "
                         f"{x_shape[2]}x{x_shape[3]} with pad {pad}; use larger images, a smaller "
                         "window or more padding")
    return out_h, out_w


@on_input_device
def im2col(input_data: Array, filter_h: int, filter_w: int, stride: int = 1, pad: int = 0, *,
           pad_value: float = 0.0) -> Array:
    """Windows of ``input_data`` (N, C, H, W) as rows: shape (N*out_h*out_w, C*filter_h*filter_w).

    Rows run over (n, out_y, out_x), columns over (c, filter_y, filter_x), the book's
    order, so a filter bank ``W`` (FN, C, FH, FW) reshaped to (FN, -1) matches the columns.
    The border is padded with ``pad_value`` (``-inf`` suits max pooling).
    """
    xp = namespace_of(input_data)
    windows = xp.stack(_window_views("im2col", input_data, filter_h, filter_w, stride, pad,
                                     pad_value), axis=2)  # (N, C, FH*FW, out_h, out_w)
    n, c, k, out_h, out_w = windows.shape
    return xp.reshape(xp.permute_dims(windows, (0, 3, 4, 1, 2)), (n * out_h * out_w, c * k))


@on_input_device
def col2im(col: Array, input_shape: tuple[int, ...], filter_h: int, filter_w: int,
           stride: int = 1, pad: int = 0) -> Array:
    """The adjoint of :func:`im2col`: each row's values summed back onto the pixels they came from.

    A pixel covered by k windows receives the sum of its k entries, which is what a
    backward pass needs. Padding is cut off at the end.
    """
    xp = namespace_of(col)
    n, c, h, w = input_shape
    out_h, out_w = _check_geometry("col2im", tuple(input_shape), filter_h, filter_w, stride, pad)
    if tuple(col.shape) != (n * out_h * out_w, c * filter_h * filter_w):
        raise ShapeError(f"col2im got columns of shape {tuple(col.shape)}; images {tuple(input_shape)} "
                         f"with {filter_h}x{filter_w} windows need "
                         f"{(n * out_h * out_w, c * filter_h * filter_w)}")
    windows = xp.permute_dims(xp.reshape(col, (n, out_h, out_w, c, filter_h * filter_w)),
                              (0, 3, 4, 1, 2))  # (N, C, FH*FW, out_h, out_w)
    return _summed_windows([windows[:, :, k, :, :] for k in range(filter_h * filter_w)],
                           (n, c, h, w), filter_h, filter_w, stride, pad)


def _window_views(caller: str, images: Array, filter_h: int, filter_w: int, stride: int,
                  pad: int, pad_value: float) -> list[Array]:
    """For each filter position (row-major), the (N, C, out_h, out_w) pixels it sees: a strided slice."""
    out_h, out_w = _check_geometry(caller, tuple(images.shape), filter_h, filter_w, stride, pad)
    if pad:
        images = xpx.pad(images, ((0, 0), (0, 0), (pad, pad), (pad, pad)), constant_values=pad_value)
    # stops stay inside the axis: out-of-bounds slice stops are not in the standard
    span_h, span_w = stride * (out_h - 1) + 1, stride * (out_w - 1) + 1
    return [images[:, :, y:y + span_h:stride, x:x + span_w:stride]
            for y in range(filter_h) for x in range(filter_w)]


def _summed_windows(parts: list[Array], input_shape: tuple[int, ...], filter_h: int,
                    filter_w: int, stride: int, pad: int) -> Array:
    """The adjoint of :func:`_window_views`: each part summed onto the pixels its slice took."""
    xp = namespace_of(*parts)
    n, c, h, w = input_shape
    out_h, out_w = parts[0].shape[2], parts[0].shape[3]
    img = xp.zeros((n, c, h + 2 * pad, w + 2 * pad), dtype=parts[0].dtype,
                   device=array_device_of(parts[0]))
    span_h, span_w = stride * (out_h - 1) + 1, stride * (out_w - 1) + 1
    for k, part in enumerate(parts):
        y, x = divmod(k, filter_w)
        # a strided slice has no repeated positions, so .add cannot lose a term;
        # at() updates in place where the backend can, so always reassign
        img = xpx.at(img)[:, :, y:y + span_h:stride, x:x + span_w:stride].add(part)
    return img[:, :, pad:pad + h, pad:pad + w]


class Convolution(Layer):
    """A bank of FN filters ``W`` (FN, C, FH, FW) with biases ``b`` (FN,), over NCHW input.

    ``forward`` returns (N, FN, out_h, out_w); ``backward`` fills ``dW`` and ``db`` and
    returns ``dx``, or ``None`` with ``input_grad=False`` (a network's first layer needs no
    gradient for its data, and summing the windows back is a large part of the layer's cost).

    The windows are :func:`im2col`'s, laid out channels first as (FH*FW*C, N*out_h*out_w)
    rather than the book's (N*out_h*out_w, C*FH*FW): each way through the layer is then one
    large matrix product (``W (FN, FH*FW*C) @ cols`` forward, ``dout @ cols.T`` and
    ``W.T @ dout`` backward) instead of one small product per image, and only the output and
    the input gradient change layout (NCHW <-> CNHW), copies the size of one image batch rather
    than of the windows. ``W`` is reordered to (FN, FH, FW, C) to match the rows. On a 2-core
    CPU this made DeepConvNet's 3x3 layers up to 2.2x faster (docs/performance.md).
    """

    param_names: tuple[str, ...] = ("W", "b")
    saved_names: tuple[str, ...] = ("cols", "W_mat")

    def __init__(self, W: Array, b: Array, stride: int = 1, pad: int = 0, *,
                 input_grad: bool = True) -> None:
        if W.ndim != 4 or tuple(b.shape) != (W.shape[0],):
            raise ShapeError(f"Convolution needs W of shape (FN, C, FH, FW) and b of shape (FN,), "
                             f"got {tuple(W.shape)} and {tuple(b.shape)}")
        self.W = W
        self.b = b
        self.stride = check_size("Convolution stride", stride)
        self.pad = check_count("Convolution pad", pad)
        self.input_grad = input_grad
        self.x_shape: tuple[int, ...] | None = None
        self.cols = None  # (FH*FW*C, N*out_h*out_w)
        self.W_mat = None  # W as (FN, FH*FW*C)
        self.dW = None
        self.db = None

    @on_input_device
    def forward(self, x: Array) -> Array:
        xp = namespace_of(x, self.W, self.b)
        _check_convolution_input(x, self.W)
        filters, _, filter_h, filter_w = self.W.shape
        # channels first: every window's slice is then (C, N, out_h, out_w), and stacking them
        # gives rows (filter_y, filter_x, c) and columns (n, out_y, out_x) in one copy
        windows = _window_views("Convolution", xp.permute_dims(x, (1, 0, 2, 3)), filter_h,
                                filter_w, self.stride, self.pad, 0.0)
        out_h, out_w = windows[0].shape[2], windows[0].shape[3]
        self.x_shape = tuple(x.shape)
        # the batch as -1, never x.shape[0]: it may be unknown (None in an ONNX export's graph)
        self.cols = xp.reshape(xp.stack(windows, axis=0), (len(windows) * x.shape[1], -1))
        self.W_mat = xp.reshape(xp.permute_dims(self.W, (0, 2, 3, 1)), (filters, -1))
        out = self.W_mat @ self.cols + xp.reshape(self.b, (filters, 1))
        return xp.permute_dims(xp.reshape(out, (filters, -1, out_h, out_w)), (1, 0, 2, 3))

    @on_input_device
    def backward(self, dout: Array) -> Array | None:
        xp = namespace_of(dout)
        n, filters, out_h, out_w = dout.shape
        dout = xp.reshape(xp.permute_dims(dout, (1, 0, 2, 3)), (filters, -1))  # (FN, N*out_h*out_w)
        self.db = xp.sum(dout, axis=1)
        _, channels, filter_h, filter_w = self.W.shape
        dW = xp.reshape(dout @ xp.matrix_transpose(self.cols), (filters, filter_h, filter_w, channels))
        self.dW = xp.permute_dims(dW, (0, 3, 1, 2))
        if not self.input_grad:
            return None
        dcols = xp.reshape(xp.matrix_transpose(self.W_mat) @ dout,
                           (filter_h * filter_w, channels, n, out_h, out_w))
        image_shape = (channels, n, self.x_shape[2], self.x_shape[3])
        dx = _summed_windows([dcols[k, ...] for k in range(filter_h * filter_w)], image_shape,
                             filter_h, filter_w, self.stride, self.pad)
        return xp.permute_dims(dx, (1, 0, 2, 3))


def _check_convolution_input(x: Array, W: Array) -> None:
    if x.ndim != 4 or x.shape[1] != W.shape[1]:
        raise ShapeError(f"Convolution got input of shape {tuple(x.shape)} but W has shape "
                         f"{tuple(W.shape)}: it takes images (N, {W.shape[1]}, H, W)")
    check_input_dtype("Convolution", x, W)


class Pooling(Layer):
    """Max pooling over ``pool_h`` x ``pool_w`` windows of each channel, NCHW.

    The border is padded with ``-inf`` (the book pads with 0, which beats every negative
    input), so ``pad`` must be smaller than the window for each window to hold a pixel.
    ``backward`` routes each window's gradient to exactly one input, its first maximum in
    row-major order (``argmax``'s tie rule), with comparisons and ``where``, never a boolean mask.
    """

    saved_names: tuple[str, ...] = ("windows", "out")

    def __init__(self, pool_h: int, pool_w: int, stride: int = 1, pad: int = 0) -> None:
        self.pool_h = check_size("Pooling pool_h", pool_h)
        self.pool_w = check_size("Pooling pool_w", pool_w)
        self.stride = check_size("Pooling stride", stride)
        self.pad = check_count("Pooling pad", pad)
        if self.pad >= min(self.pool_h, self.pool_w):
            raise ConfigError(f"Pooling pad {pad} must be smaller than the {pool_h}x{pool_w} window, "
                              "or some windows would hold only padding")
        self.x_shape: tuple[int, ...] | None = None
        self.windows: list[Array] = []
        self.out = None

    @on_input_device
    def forward(self, x: Array) -> Array:
        xp = namespace_of(x)
        # one (N, C, out_h, out_w) slice per window position: the elementwise maximum of the
        # slices is the pooled output, with no im2col copy of the input (the book's way)
        self.windows = _window_views("Pooling", x, self.pool_h, self.pool_w, self.stride,
                                     self.pad, -float("inf"))
        self.x_shape = tuple(x.shape)
        self.out = functools.reduce(xp.maximum, self.windows)
        return self.out

    @on_input_device
    def backward(self, dout: Array) -> Array:
        xp = namespace_of(dout)
        routed = []
        taken = None  # outputs whose gradient an earlier position (a first maximum) has taken
        for window in self.windows:  # row-major: the order in which argmax finds the first maximum
            hit = window == self.out
            if taken is not None:
                hit = xp.logical_and(hit, xp.logical_not(taken))
            taken = hit if taken is None else xp.logical_or(taken, hit)
            routed.append(dout * xp.astype(hit, dout.dtype))
        return _summed_windows(routed, self.x_shape, self.pool_h, self.pool_w, self.stride, self.pad)
