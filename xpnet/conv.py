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
import math
from typing import Any

import array_api_extra as xpx
from array_api_compat import device as array_device_of, is_writeable_array

from .backend import Array, namespace_of, on_input_device
from .errors import ConfigError, ShapeError
from .layers import Layer, check_input_dtype, register_layer
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
        images = _padded(images, pad, pad_value)
    # stops stay inside the axis: out-of-bounds slice stops are not in the standard
    span_h, span_w = stride * (out_h - 1) + 1, stride * (out_w - 1) + 1
    return [images[:, :, y:y + span_h:stride, x:x + span_w:stride]
            for y in range(filter_h) for x in range(filter_w)]


def _padded(images: Array, pad: int, value: float) -> Array:
    """``images`` with ``pad`` pixels of ``value`` on each side of H and W.

    ``xpx.pad`` needs every dimension known; a lazy array (ndonnx recording an ONNX graph with
    a free batch size) has ``None`` there, so its borders are concatenated instead: rows and
    columns of ``value`` shaped from slices of the images themselves.
    """
    if None not in images.shape:
        return xpx.pad(images, ((0, 0), (0, 0), (pad, pad), (pad, pad)), constant_values=value)
    xp = namespace_of(images)
    rows = xp.full_like(images[:, :, :1, :], value)
    images = xp.concat([rows] * pad + [images] + [rows] * pad, axis=2)
    columns = xp.full_like(images[:, :, :, :1], value)
    return xp.concat([columns] * pad + [images] + [columns] * pad, axis=3)


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


def _stacked(parts: list[Array], reusable: Array | None) -> Array:
    """``xp.stack(parts)``, written into ``reusable`` (any shape of the same size) where it fits
    and the backend writes in place.

    A large fresh array costs the operating system's zeroing of its pages on every step (on
    NumPy, about three times the stack itself: docs/performance.md); JAX's arrays are
    immutable, so there a new one is made each time.
    """
    xp = namespace_of(*parts)
    shape = (len(parts), *parts[0].shape)
    if (reusable is None or not is_writeable_array(reusable) or namespace_of(reusable) is not xp
            or None in shape or math.prod(reusable.shape) != math.prod(shape)
            or reusable.dtype != parts[0].dtype
            or array_device_of(reusable) != array_device_of(parts[0])):
        return xp.stack(parts, axis=0)
    stacked = xp.reshape(reusable, shape)
    for k, part in enumerate(parts):
        stacked = xpx.at(stacked)[k, ...].set(part)
    return stacked


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
    CPU this made DeepConvNet's 3x3 layers faster (measured in docs/performance.md).

    With stride 1 and no more filters than channels, backward computes ``dx`` as a convolution
    of ``dout`` (:meth:`_input_gradient_by_correlation`); otherwise it sums ``W.T @ dout``'s
    rows back onto the image. Where the backend writes in place (not JAX), the layer keeps
    its last windows and writes the next call's into them (when the shapes match): memory the
    size of the columns held between steps, for no fresh allocation of that size each step.
    """

    param_names: tuple[str, ...] = ("W", "b")
    saved_names: tuple[str, ...] = ("cols", "W_mat")
    kept_names: tuple[str, ...] = ("_spare_cols", "_spare_dout_cols")
    prefix = "Conv"

    def __init__(self, W: Array | None = None, b: Array | None = None, stride: int = 1,
                 pad: int = 0, *, input_grad: bool = True, filter_num: int | None = None,
                 filter_size: int | None = None, weight_init_std: str | float = "he") -> None:
        if W is None:  # a layer for xpnet.Sequential, which creates W and b in build
            self.filter_num = check_size("filter_num", filter_num)
            self.filter_size = check_size("filter_size", filter_size)
        elif W.ndim != 4 or b is None or tuple(b.shape) != (W.shape[0],):
            raise ShapeError(f"Convolution needs W of shape (FN, C, FH, FW) and b of shape (FN,), "
                             f"got {tuple(W.shape)} and {None if b is None else tuple(b.shape)}")
        else:
            self.filter_num, self.filter_size = W.shape[0], W.shape[2]
        self.weight_init_std = weight_init_std
        self.W = W
        self.b = b
        self.stride = check_size("Convolution stride", stride)
        self.pad = check_count("Convolution pad", pad)
        self.input_grad = input_grad
        self.x_shape: tuple[int, ...] | None = None
        self.cols = None  # (FH*FW*C, N*out_h*out_w)
        # the last cols and backward's windows of dout, kept past gradient()'s release of
        # saved arrays for the next step to write into
        self._spare_cols = None
        self._spare_dout_cols = None
        self.W_mat = None  # W as (FN, FH*FW*C)
        self.dW = None
        self.db = None

    def build(self, input_shape: tuple[int, ...], init: Any) -> tuple[int, ...]:
        """``W`` (filter_num, C, filter_size, filter_size) for images ``input_shape`` (C, H, W)."""
        if len(input_shape) != 3:
            raise ShapeError(f"Convolution takes images (C, H, W), got samples of shape "
                             f"{tuple(input_shape)}")
        channels = input_shape[0]
        if self.W is None:
            size = self.filter_size
            self.W = init.normal((self.filter_num, channels, size, size),
                                 init.std(self.weight_init_std, channels * size * size))
            self.b = init.zeros((self.filter_num,))
        out_h, out_w = _check_geometry("Convolution", (1, *input_shape), self.W.shape[2],
                                       self.W.shape[3], self.stride, self.pad)
        return (self.W.shape[0], out_h, out_w)

    def settings(self) -> dict[str, Any]:
        return {"filter_num": self.filter_num, "filter_size": self.filter_size,
                "stride": self.stride, "pad": self.pad, "weight_init_std": self.weight_init_std}

    @on_input_device
    def forward(self, x: Array) -> Array:
        xp = namespace_of(x, self.W, self.b)
        _check_convolution_input(x, self.W)
        filters, _, filter_h, filter_w = self.W.shape
        # channels first: every window's slice is then (C, N, out_h, out_w), and stacking them
        # gives rows (filter_y, filter_x, c) and columns (n, out_y, out_x) in one copy
        windows = _window_views("Convolution", xp.permute_dims(x, (1, 0, 2, 3)), filter_h,
                                filter_w, self.stride, self.pad, 0.0)
        # from the input's size: a padded lazy array (an ONNX export) does not know its own
        out_h = conv_output_size(x.shape[2], filter_h, self.stride, self.pad)
        out_w = conv_output_size(x.shape[3], filter_w, self.stride, self.pad)
        self.x_shape = tuple(x.shape)
        # the batch as -1, never x.shape[0]: it may be unknown (None in an ONNX export's graph)
        self.cols = xp.reshape(_stacked(windows, self._spare_cols), (len(windows) * x.shape[1], -1))
        self._spare_cols = self.cols if is_writeable_array(self.cols) else None
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
        # dout's windows are FN/C times the size of the columns: worth it where FN <= C
        if self.stride == 1 and filter_h == filter_w and self.pad < filter_h and filters <= channels:
            dx = self._input_gradient_by_correlation(xp.reshape(dout, (filters, n, out_h, out_w)))
        else:
            dcols = xp.reshape(xp.matrix_transpose(self.W_mat) @ dout,
                               (filter_h * filter_w, channels, n, out_h, out_w))
            image_shape = (channels, n, self.x_shape[2], self.x_shape[3])
            dx = _summed_windows([dcols[k, ...] for k in range(filter_h * filter_w)],
                                 image_shape, filter_h, filter_w, self.stride, self.pad)
        return xp.permute_dims(dx, (1, 0, 2, 3))

    def _input_gradient_by_correlation(self, dout: Array) -> Array:
        """dx (C, N, H, W) from dout (FN, N, out_h, out_w), for stride 1 and pad < filter size.

        Each input pixel gets ``W[f, c, i, j] * dout[f, y - i + pad, x - j + pad]`` summed: a
        forward pass of ``dout`` padded by ``filter - 1 - pad``, with ``W`` turned 180 degrees and
        its channel axes swapped. That is one stack and one product, like forward's, where the
        columns' product (K = FN) plus the sum of FH*FW slices back onto the image took longer
        on DeepConvNet's layers with FN = C (docs/performance.md).
        """
        xp = namespace_of(dout)
        filters, channels, size, _ = self.W.shape
        windows = _window_views("Convolution", dout, size, size, 1, size - 1 - self.pad, 0.0)
        dout_cols = xp.reshape(_stacked(windows, self._spare_dout_cols), (size * size * filters, -1))
        self._spare_dout_cols = dout_cols if is_writeable_array(dout_cols) else None
        turned = xp.flip(self.W, axis=(2, 3))  # (FN, C, FH, FW) -> rows (i, j, f) as in dout_cols
        W_mat = xp.reshape(xp.permute_dims(turned, (1, 2, 3, 0)), (channels, -1))
        return xp.reshape(W_mat @ dout_cols, (channels, dout.shape[1], *self.x_shape[2:]))


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
    row-major order (``argmax``'s tie rule), with comparisons turned into 0/1 factors, never
    boolean indexing (whose result's shape depends on the data). Where the windows tile the
    image (stride = window, as in the book's 2x2 pooling), the routed gradients are written
    into the image rather than added (:func:`_tiled_windows`).
    """

    saved_names: tuple[str, ...] = ("windows", "out")
    prefix = "Pool"

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

    def build(self, input_shape: tuple[int, ...], init: Any) -> tuple[int, ...]:
        if len(input_shape) != 3:
            raise ShapeError(f"Pooling takes images (C, H, W), got samples of shape "
                             f"{tuple(input_shape)}")
        out_h, out_w = _check_geometry("Pooling", (1, *input_shape), self.pool_h, self.pool_w,
                                       self.stride, self.pad)
        return (input_shape[0], out_h, out_w)

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
        routed, unrouted = [], dout  # unrouted: outputs whose first maximum is still to come
        for k, window in enumerate(self.windows):  # row-major: the order argmax finds the first
            # a multiply by the 0/1 mask, not where(): NumPy's where is slower (docs/performance.md)
            routed.append(unrouted * xp.astype(window == self.out, dout.dtype))
            if k + 1 < len(self.windows):
                unrouted = unrouted - routed[-1]  # exact: x - x is 0 and x - 0 is x
        if self.pool_h == self.pool_w == self.stride:
            return _tiled_windows(routed, self.x_shape, self.stride, self.pad)
        return _summed_windows(routed, self.x_shape, self.pool_h, self.pool_w, self.stride, self.pad)


def _tiled_windows(parts: list[Array], input_shape: tuple[int, ...], size: int, pad: int) -> Array:
    """:func:`_summed_windows` for windows that tile the image (stride = window = ``size``).

    No pixel is in two windows, so each part is written (not added) into its slice of an
    empty image, and only the pixels no window covers are zeroed: faster than adding onto zeros
    (docs/performance.md).
    """
    xp = namespace_of(*parts)
    n, c, h, w = input_shape
    out_h, out_w = parts[0].shape[2], parts[0].shape[3]
    img = xp.empty((n, c, out_h * size, out_w * size), dtype=parts[0].dtype,
                   device=array_device_of(parts[0]))
    for k, part in enumerate(parts):
        y, x = divmod(k, size)
        img = xpx.at(img)[:, :, y::size, x::size].set(part)
    # pixels past the last whole window (and the far padding) get no gradient
    rest_h, rest_w = h + 2 * pad - out_h * size, w + 2 * pad - out_w * size
    if rest_h or rest_w:
        img = xpx.pad(img, ((0, 0), (0, 0), (0, rest_h), (0, rest_w)))
    return img[:, :, pad:pad + h, pad:pad + w]


register_layer(Convolution)
register_layer(Pooling)
