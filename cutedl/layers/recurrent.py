"""Recurrent layers: SimpleRNN, LSTM, GRU, with full backpropagation through time.

All three read ``(batch, T, features)`` and share one implementation of the Keras arguments
(``return_sequences``, ``return_state``, ``go_backwards``, ``stateful``, ``dropout``,
``recurrent_dropout``, masks); only the cell equations differ. Parameter layouts match Keras (and,
for GRU, PyTorch's formulation), so weights can be copied between frameworks:

======== ==================================================================================
SimpleRNN ``kernel (features, units)``, ``recurrent_kernel (units, units)``, ``bias (units,)``:
          h' = tanh(x·W + b + h·U)
LSTM      ``kernel (features, 4·units)``, ``recurrent_kernel (units, 4·units)``,
          ``bias (4·units,)``, gates in the order i, f, g (candidate), o:
          c' = f·c + i·g, h' = o·tanh(c'); the forget-gate bias starts at 1
GRU       ``kernel (features, 3·units)``, ``recurrent_kernel (units, 3·units)``,
          ``bias (3·units,)``, ``recurrent_bias (3·units,)``, gates r, z, n:
          r = σ(x·Wr + br + h·Ur + bur), z = σ(x·Wz + bz + h·Uz + buz),
          n = tanh(x·Wn + bn + r·(h·Un + bun)), h' = (1 − z)·n + z·h
======== ==================================================================================

How the work is laid out (for speed): the input projection ``x·W + b`` of every time step is
one GEMM before the loop; the loop does only ``h·U`` and elementwise gate arithmetic in
preallocated time-major buffers ``(T, batch, ...)``; backward runs the loop in reverse and again
finishes with one GEMM each for dL/dx, dL/dW and dL/dU over all steps.

Masks (see :mod:`cutedl.layers.base`): on a masked step the state is carried over unchanged, the
step's output (with ``return_sequences``) is zero, and the step receives no gradient, so a
sequence gives the same result whatever its padding.
"""
from __future__ import annotations

from cutedl import activations, backend, rng
from cutedl._validate import check_bool
from cutedl.layers._args import check_rate, check_units, set_weight_args, weight_args_config
from cutedl.layers.base import Layer, grad_enabled, registry


class _Act:
    """An activation with in-place fast paths for tanh and sigmoid (the RNN defaults)."""

    def __init__(self, act):
        self.act = act
        name = getattr(act, "registry_name", None)
        self.kind = name if name in ("tanh", "sigmoid") else None

    def forward(self, z, out):
        """out = f(z); ``out`` may be ``z``."""
        xp = backend.xp
        if self.kind == "tanh":
            xp.tanh(z, out=out)
        elif self.kind == "sigmoid":
            # σ(z) = (1 + tanh(z / 2)) / 2: no overflow for any z, no warnings
            xp.multiply(z, 0.5, out=out)
            xp.tanh(out, out=out)
            out *= 0.5
            out += 0.5
        else:
            out[...] = self.act.forward(z)
        return out

    def backward(self, z, y, grad, out):
        """out = grad · f'(z) given y = f(z)."""
        xp = backend.xp
        if self.kind == "tanh":
            xp.multiply(y, y, out=out)
            xp.subtract(1.0, out, out=out)
            out *= grad
        elif self.kind == "sigmoid":
            xp.subtract(1.0, y, out=out)
            out *= y
            out *= grad
        else:
            out[...] = self.act.backward(z, y, grad)
        return out


class RNN(Layer):
    """Shared machinery of SimpleRNN, LSTM and GRU (not used directly).

    Args:
        units: size of the hidden state (and of each output step).
        activation: activation of the candidate / output (default tanh).
        use_bias: add the bias vector(s).
        return_sequences: output every step ``(batch, T, units)`` instead of the last
            ``(batch, units)``.
        return_state: ``forward`` returns the list ``[output, *final_states]`` (h for
            SimpleRNN/GRU, h and c for LSTM), and ``backward`` accepts the list
            ``[d_output, *d_states]`` (entries may be None). A list cannot flow through a
            sequential :class:`~cutedl.Model`, which rejects such a layer: use it standalone, or
            read :attr:`states` after a forward.
        go_backwards: process the sequence from the last step to the first; with
            ``return_sequences`` the output is in processing (reversed) order, as in Keras.
        stateful: the final state of a batch is the initial state of the next (same batch size),
            until :meth:`reset_states`; gradients are truncated at the batch boundary.
        kernel_initializer / recurrent_initializer / bias_initializer: initializers of the
            parameters.
        kernel_regularizer / recurrent_regularizer / bias_regularizer: optional regularizers.
        dropout: fraction of the input features dropped while training; the same features are
            dropped at every step of a sequence (variational dropout, as in Keras).
        recurrent_dropout: the same for the state entering the recurrent product ``h·U``.
        seed: seed of the layer's dropout generator.
    Input shape: ``(batch, T, features)`` (``T`` may be None: any length).
    Output shape: ``(batch, T, units)`` or ``(batch, units)``.

    ``forward(x, training=False, mask=None, initial_state=None)``: ``mask`` is a bool
    ``(batch, T)`` array (True = real step), ``initial_state`` a list of ``(batch, units)``
    arrays; after ``backward`` the gradients w.r.t. the initial state are in
    ``initial_state_grads``.
    """

    _n_gates = 1
    _state_names = ("h",)

    def __init__(self, units: int, activation="tanh", use_bias: bool = True,
                 return_sequences: bool = False, return_state: bool = False, go_backwards: bool = False,
                 stateful: bool = False, kernel_initializer="glorot_uniform",
                 recurrent_initializer="orthogonal", bias_initializer="zeros",
                 kernel_regularizer=None, recurrent_regularizer=None, bias_regularizer=None,
                 dropout: float = 0.0, recurrent_dropout: float = 0.0, seed=None, **kwargs):
        super().__init__(**kwargs)
        who = type(self).__name__
        self.units = check_units(who, "units", units)
        self.cell_activation = activations.get(activation)
        self.use_bias = check_bool(who, "use_bias", use_bias)
        self.return_sequences = check_bool(who, "return_sequences", return_sequences)
        self.return_state = check_bool(who, "return_state", return_state)
        self.go_backwards = check_bool(who, "go_backwards", go_backwards)
        self.stateful = check_bool(who, "stateful", stateful)
        set_weight_args(self, kernel=(kernel_initializer, kernel_regularizer),
                        recurrent=(recurrent_initializer, recurrent_regularizer),
                        bias=(bias_initializer, bias_regularizer))
        self.dropout = check_rate(who, "dropout", dropout)
        self.recurrent_dropout = check_rate(who, "recurrent_dropout", recurrent_dropout)
        self.seed = seed
        self._rng = rng.make_rng(seed)
        self._act = _Act(self.cell_activation)
        self._states = None  # carried state (stateful) or final state of the last forward
        self.initial_state_grads = None

    # ------------------------------------------------------------------ building
    def build(self, inshape):
        if len(inshape) != 2 or inshape[1] is None:
            raise ValueError(
                f"Layer {self.describe()} expects input (batch, T, features) with known features, got "
                f"(batch, {', '.join('?' if d is None else str(d) for d in inshape)}). "
                f"For a univariate series use x[..., None] and inshape=(T, 1).")
        width = self._n_gates * self.units
        self.kernel = self.add_param("kernel", (inshape[1], width), self.kernel_initializer,
                                     self.kernel_regularizer)
        self.recurrent_kernel = self.add_param("recurrent_kernel", (self.units, width),
                                               self.recurrent_initializer, self.recurrent_regularizer)
        self.bias = self.add_param("bias", (width,), self.bias_initializer,
                                   self.bias_regularizer) if self.use_bias else None
        self._build_extra()
        self.outshape = (inshape[0], self.units) if self.return_sequences else (self.units,)
        self._states = None

    def _build_extra(self):
        """Hook for cell-specific parameters and initial values."""

    @property
    def returns_list(self) -> bool:
        """True when ``forward`` returns ``[output, *states]`` (a sequential Model rejects it)."""
        return self.return_state

    # ------------------------------------------------------------------ states
    @property
    def states(self):
        """Final states of the last forward (``[h]`` or ``[h, c]``, each ``(batch, units)``), or None."""
        return None if self._states is None else list(self._states)

    def reset_states(self, states=None) -> None:
        """Forget the carried state (``stateful=True``), or set it to ``states`` (a list of arrays)."""
        if states is None:
            self._states = None
            return
        self._states = self._check_states(states, None, "reset_states")

    def _check_states(self, states, batch, what):
        xp = backend.xp
        names = self._state_names
        if not isinstance(states, (list, tuple)) or len(states) != len(names):
            raise ValueError(f"Layer {self.describe()}: {what} must be a list of {len(names)} arrays "
                             f"({', '.join(names)}), got {type(states).__name__} of length "
                             f"{len(states) if hasattr(states, '__len__') else '?'}.")
        out = []
        for name, s in zip(names, states):
            s = xp.asarray(s, dtype=self.dtype)
            want = (batch if batch is not None else s.shape[0], self.units)
            if s.shape != want:
                raise ValueError(f"Layer {self.describe()}: {what} state {name} must have shape "
                                 f"(batch={want[0]}, units={self.units}), got {s.shape}.")
            out.append(s.copy())
        return out

    def compute_mask(self, x, mask=None):
        """The mask goes on with the sequence (reversed with go_backwards); a last-step output consumes it."""
        if mask is None or not self.return_sequences:
            return None
        return mask[:, ::-1] if self.go_backwards else mask

    # ------------------------------------------------------------------ forward
    def forward(self, x, training=False, mask=None, initial_state=None):
        xp = backend.xp
        self.check_input(x)
        if x.dtype != self.dtype:
            x = x.astype(self.dtype)
        batch, steps, _ = x.shape
        if steps == 0:
            raise ValueError(f"Layer {self.describe()} got a sequence of length 0; it needs at least one step.")
        if mask is not None:
            mask = xp.asarray(mask)
            if mask.shape != (batch, steps) or mask.dtype != bool:
                raise ValueError(f"Layer {self.describe()}: mask must be a bool array of shape "
                                 f"(batch, T) = {(batch, steps)}, got {mask.dtype} {mask.shape}.")
        if initial_state is not None:
            states = self._check_states(initial_state, batch, "initial_state")
        elif self.stateful and self._states is not None:
            states = self._states
            if states[0].shape[0] != batch:
                raise ValueError(
                    f"Layer {self.describe()} is stateful and carries the state of a batch of "
                    f"{states[0].shape[0]} sequences, but got a batch of {batch}. Keep the batch size "
                    f"constant (e.g. drop the last partial batch) or call reset_states() first.")
        else:
            states = [xp.zeros((batch, self.units), dtype=self.dtype) for _ in self._state_names]

        xt = x.transpose(1, 0, 2)  # (batch, T, F) -> time-major (T, batch, F)
        mt = None if mask is None else mask.T  # (T, batch)
        if self.go_backwards:
            xt = xt[::-1]
            mt = None if mt is None else mt[::-1]
        self._xmask = self._dropout_mask(training, self.dropout, (batch, x.shape[2]))
        self._hmask = self._dropout_mask(training, self.recurrent_dropout, (batch, self.units))
        xt = xt * self._xmask if self._xmask is not None else xt
        xt = xp.ascontiguousarray(xt)
        self._xt = xt
        # one GEMM for the input projection of every step:
        # (T*batch, F) @ (F, G*units) -> (T, batch, G*units)
        zx = (xt.reshape(-1, xt.shape[2]) @ self.kernel.value).reshape(steps, batch, self.kernel.shape[1])
        if self.bias is not None:
            zx += self.bias.value
        # masks as (T, batch, 1) floats for arithmetic, plus the bool form for copyto(where=)
        self._keep = None if mt is None else mt[:, :, None].astype(self.dtype)
        self._skip = None if mt is None else ~mt[:, :, None]
        seq = self._run(zx, states)  # (T, batch, units): h after every step
        self._steps = steps

        final = [s[-1] for s in self._state_seqs()]
        self._states = [s.copy() for s in final]   # the carried state updates under no_grad too
        if self.return_sequences:
            out = seq[1:] if self._keep is None else seq[1:] * self._keep
            out = out.transpose(1, 0, 2).copy()  # -> (batch, T, units)
        else:
            out = seq[-1].copy()
        if not grad_enabled():
            self._drop_caches()
        if self.return_state:
            return [out] + [s.copy() for s in final]
        return out

    _CACHES = ("_xt", "_z", "_gates", "_h", "_c", "_tc", "_hu", "_keep", "_skip", "_xmask", "_hmask")

    def _drop_caches(self):
        """Forget everything backward would need (a forward under no_grad keeps nothing)."""
        for name in self._CACHES:
            self.__dict__.pop(name, None)

    def _dropout_mask(self, training, rate, shape):
        xp = backend.xp
        if not training or rate == 0.0:
            return None
        # drawn on the device (on NumPy: the generator's own draw, as before)
        u = backend.uniform(self._rng, shape, xp.float32 if self.dtype == xp.float32 else xp.float64)
        m = (u >= rate).astype(self.dtype)
        m *= self.dtype.type(1.0 / (1.0 - rate))
        return m

    def _carry(self, seq, t):
        """On masked steps, state t+1 is state t (the step is skipped)."""
        xp = backend.xp
        if self._skip is not None:
            xp.copyto(seq[t + 1], seq[t], where=self._skip[t])

    def _rec_input(self, h):
        """The state entering h·U (recurrent dropout applied)."""
        return h if self._hmask is None else h * self._hmask

    # ------------------------------------------------------------------ backward
    def backward(self, grad):
        xp = backend.xp
        if "_xt" not in self.__dict__:
            raise RuntimeError(f"Layer {self.describe()}: backward called after a forward under no_grad() (which "
                               f"keeps nothing for backward), or before any forward. Run the forward pass "
                               f"outside no_grad() to train.")
        steps, batch, units = self._steps, self._xt.shape[1], self.units
        dstates = [None] * len(self._state_names)
        if isinstance(grad, (list, tuple)):
            if not self.return_state or len(grad) != 1 + len(self._state_names):
                raise ValueError(f"Layer {self.describe()}: backward got a list of {len(grad)} gradients; "
                                 f"it takes one array, or [d_output, {', '.join('d_' + n for n in self._state_names)}] "
                                 f"with return_state=True.")
            grad, dstates = grad[0], list(grad[1:])
        dt = self.dtype
        dseq = None
        dlast = [xp.zeros((batch, units), dtype=dt) if d is None else xp.array(d, dtype=dt) for d in dstates]
        if grad is not None:
            if self.return_sequences:
                dseq = grad.transpose(1, 0, 2).astype(dt, copy=False)  # (T, batch, units)
                if self._keep is not None:
                    dseq = dseq * self._keep
            else:
                dlast[0] += grad
        dzx, dzh = self._bptt(dseq, dlast)  # (T, batch, G*units) each; dzh is dzx for most cells
        g2 = dzx.reshape(-1, dzx.shape[2])  # (T*batch, G*units)
        k = self.kernel
        k.grad = self._xt.reshape(-1, self._xt.shape[2]).T @ g2  # (F, T*batch) @ (T*batch, G*units)
        if self.bias is not None:
            self.bias.grad = g2.sum(axis=0)
        hprev = self._state_seqs()[0][:-1]  # (T, batch, units): h entering each step
        if self._hmask is not None:
            hprev = hprev * self._hmask
        gh = dzh.reshape(-1, dzh.shape[2])
        self.recurrent_kernel.grad = hprev.reshape(-1, units).T @ gh  # (units, T*batch) @ (T*batch, G*units)
        self._extra_grads(gh)
        if self.skip_input_grad:
            return None
        dxt = (g2 @ k.value.T).reshape(steps, batch, k.shape[0])  # (T*batch, G*units) @ (G*units, F)
        if self._xmask is not None:
            dxt *= self._xmask
        if self.go_backwards:
            dxt = dxt[::-1]
        return dxt.transpose(1, 0, 2).copy()  # -> (batch, T, F)

    def _extra_grads(self, gh):
        """Hook for grads of cell-specific parameters (GRU's recurrent_bias)."""

    def _split_masked(self, d, t):
        """(gradient reaching the step's new value, gradient carried past a masked step)."""
        if self._keep is None:
            return d, None
        keep = self._keep[t]
        return d * keep, d * (1.0 - keep)

    def _dh_prev(self, dz_h):
        """dL/dh(t-1) through the recurrent product: dz_h @ U^T (recurrent dropout applied)."""
        dh = dz_h @ self.recurrent_kernel.value.T  # (batch, G*units) @ (G*units, units)
        if self._hmask is not None:
            dh *= self._hmask
        return dh

    # ------------------------------------------------------------------ config
    def get_config(self):
        cfg = super().get_config()
        cfg.update(units=self.units, activation=activations.serialize(self.cell_activation),
                   use_bias=self.use_bias, return_sequences=self.return_sequences,
                   return_state=self.return_state, go_backwards=self.go_backwards, stateful=self.stateful,
                   **weight_args_config(self, "kernel", "recurrent", "bias"),
                   dropout=self.dropout, recurrent_dropout=self.recurrent_dropout, seed=self.seed)
        return cfg

    def __repr__(self) -> str:
        out = f", outshape={self.outshape}" if self.built else ""
        return f"{type(self).__name__}(units={self.units}, name={self.name!r}{out})"


@registry.register("SimpleRNN")
class SimpleRNN(RNN):
    """Fully connected recurrence ``h' = activation(x·W + b + h·U)``.

    Args: see :class:`RNN` (``units``, ``activation='tanh'``, ``return_sequences``, ...).
    Params: ``kernel (features, units)``, ``recurrent_kernel (units, units)``, ``bias (units,)``.
    Example:
        >>> Model([SimpleRNN(32, inshape=(None, 8)), Dense(1)])
    """

    def _run(self, zx, states):
        xp = backend.xp
        steps, batch, u = zx.shape
        h = xp.empty((steps + 1, batch, u), dtype=self.dtype)
        h[0] = states[0]
        u_mat = self.recurrent_kernel.value
        for t in range(steps):
            z = zx[t]
            z += self._rec_input(h[t]) @ u_mat  # (batch, units) @ (units, units); zx[t] is now the pre-activation
            self._act.forward(z, h[t + 1])
            self._carry(h, t)
        self._z, self._h = zx, h
        return h

    def _state_seqs(self):
        return [self._h]

    def _bptt(self, dseq, dlast):
        xp = backend.xp
        steps = self._steps
        dz = xp.empty_like(self._z)
        dh = dlast[0]
        for t in range(steps - 1, -1, -1):
            if dseq is not None:
                dh = dh + dseq[t]
            dnew, carry = self._split_masked(dh, t)
            self._act.backward(self._z[t], self._h[t + 1], dnew, dz[t])
            dh = self._dh_prev(dz[t])
            if carry is not None:
                dh += carry
        self.initial_state_grads = [dh]
        return dz, dz


@registry.register("LSTM")
class LSTM(RNN):
    """Long short-term memory (Hochreiter & Schmidhuber, 1997), Keras layout.

    Gates, in this order along the 4·units axis: i (input), f (forget), g (candidate), o (output):
    ``i, f, o = recurrent_activation(x·W + b + h·U)`` for their slices,
    ``g = activation(...)``, ``c' = f·c + i·g``, ``h' = o·activation(c')``.

    Args:
        recurrent_activation: gate activation (default sigmoid).
        unit_forget_bias: initialise the forget-gate bias to 1 (default True; Jozefowicz et al., 2015).
        others: see :class:`RNN`.
    Params: ``kernel (features, 4·units)``, ``recurrent_kernel (units, 4·units)``, ``bias (4·units,)``.
    States: ``[h, c]``.
    Example:
        >>> Model([LSTM(128, inshape=(28, 28)), Dense(10, activation='softmax')])
    """

    _n_gates = 4
    _state_names = ("h", "c")

    def __init__(self, units: int, activation="tanh", recurrent_activation="sigmoid",
                 unit_forget_bias: bool = True, **kwargs):
        super().__init__(units, activation=activation, **kwargs)
        self.recurrent_activation = activations.get(recurrent_activation)
        self._ract = _Act(self.recurrent_activation)
        self.unit_forget_bias = check_bool("LSTM", "unit_forget_bias", unit_forget_bias)

    def _build_extra(self):
        if self.bias is not None and self.unit_forget_bias:
            self.bias.value[self.units:2 * self.units] = 1.0

    def _run(self, zx, states):
        xp = backend.xp
        steps, batch, _ = zx.shape
        u = self.units
        dt = self.dtype
        # Gate-major layout, (T, 4, batch, units), as in GRU: each gate is a contiguous block (ops
        # on column slices of (batch, 4u) rows pay numpy's per-row loop overhead): x·W + b is
        # regrouped once, h·U lands gate-major from the GEMM (U read as (4, units, units)).
        pre = xp.ascontiguousarray(zx.reshape(steps, batch, 4, u).transpose(0, 2, 1, 3))  # (T, 4, batch, u)
        gates = xp.empty_like(pre)  # activated i, f, g, o
        u4 = self.recurrent_kernel.value.reshape(u, 4, u).transpose(1, 0, 2)  # (4, units, units) view
        h = xp.empty((steps + 1, batch, u), dtype=dt)
        c = xp.empty((steps + 1, batch, u), dtype=dt)
        tc = xp.empty((steps, batch, u), dtype=dt)  # activation(c) of every step
        h[0], c[0] = states
        tmp = xp.empty((batch, u), dtype=dt)
        hu = xp.empty((4, batch, u), dtype=dt)
        # sigmoid gates with a tanh candidate (the defaults): sigma(z) = tanh(z / 2) / 2 + 1 / 2, so
        # all four gates are one tanh after halving i, f and o (exact), then a multiply-add for those.
        fused = self._ract.kind == "sigmoid" and self._act.kind == "tanh"
        for t in range(steps):
            a, p = gates[t], pre[t]
            xp.matmul(self._rec_input(h[t]), u4, out=hu)  # (batch, units) @ (4, units, units) -> (4, batch, units)
            p += hu  # pre-activations x·W + b + h·U
            if fused:
                xp.multiply(p[:2], 0.5, out=a[:2])
                xp.multiply(p[3], 0.5, out=a[3])
                a[2] = p[2]
                xp.tanh(a, out=a)
                for s in (a[:2], a[3]):
                    s *= 0.5
                    s += 0.5
            else:
                self._ract.forward(p, a)  # all four gates, then the candidate is redone
                self._act.forward(p[2], a[2])
            xp.multiply(a[1], c[t], out=c[t + 1])  # f * c
            xp.multiply(a[0], a[2], out=tmp)  # i * g
            c[t + 1] += tmp
            self._carry(c, t)
            self._act.forward(c[t + 1], tc[t])
            xp.multiply(a[3], tc[t], out=h[t + 1])
            self._carry(h, t)
        self._z, self._gates, self._h, self._c, self._tc = pre, gates, h, c, tc
        return h

    def _state_seqs(self):
        return [self._h, self._c]

    def _bptt(self, dseq, dlast):
        xp = backend.xp
        steps, u = self._steps, self.units
        gates, c, tc = self._gates, self._c, self._tc
        pre = self._z
        batch = c.shape[1]
        dz = xp.empty((steps, batch, 4 * u), dtype=self.dtype)  # the GEMMs' layout
        da = xp.empty_like(gates[0])  # dL/d(activated gates) of one step, gate-major
        dp = xp.empty_like(gates[0])  # dL/d(their pre-activations)
        dtc = xp.empty_like(tc[0])  # dL/d act(c)
        dcc = xp.empty_like(tc[0])  # its share of dL/dc
        dh, dc = dlast
        for t in range(steps - 1, -1, -1):
            if dseq is not None:
                dh = dh + dseq[t]
            dh_new, h_carry = self._split_masked(dh, t)
            dc_new, c_carry = self._split_masked(dc, t)
            a, p = gates[t], pre[t]
            xp.multiply(dh_new, tc[t], out=da[3])  # do = dh * act(c)
            xp.multiply(dh_new, a[3], out=dtc)  # d act(c)
            dc_new = dc_new + self._act.backward(c[t + 1], tc[t], dtc, dcc)
            xp.multiply(dc_new, a[2], out=da[0])  # di = dc * g
            xp.multiply(dc_new, c[t], out=da[1])  # df = dc * c_prev
            xp.multiply(dc_new, a[0], out=da[2])  # dg = dc * i
            self._ract.backward(p, a, da, dp)
            self._act.backward(p[2], a[2], da[2], dp[2])
            dzt = dz[t]
            dzt.reshape(batch, 4, u)[...] = dp.transpose(1, 0, 2)
            dc = dc_new * a[1]  # dc_prev = dc * f
            dh = self._dh_prev(dzt)
            if h_carry is not None:
                dh += h_carry
                dc += c_carry
        self.initial_state_grads = [dh, dc]
        return dz, dz

    def get_config(self):
        cfg = super().get_config()
        cfg.update(recurrent_activation=activations.serialize(self.recurrent_activation),
                   unit_forget_bias=self.unit_forget_bias)
        return cfg


@registry.register("GRU")
class GRU(RNN):
    """Gated recurrent unit in PyTorch's formulation (reset gate applied after ``h·Un``).

    Gates r (reset), z (update), n (candidate), in this order along the 3·units axis:
    ``r = σ(x·Wr + br + h·Ur + bur)``, ``z = σ(x·Wz + bz + h·Uz + buz)``,
    ``n = activation(x·Wn + bn + r·(h·Un + bun))``, ``h' = (1 − z)·n + z·h``
    (σ is ``recurrent_activation``). Keras's ``GRU(reset_after=True)`` is the same cell with its
    two bias rows as ``bias`` and ``recurrent_bias``; PyTorch's ``nn.GRU`` stores the transposed
    kernels, ``weight_ih = kernel.T``, ``weight_hh = recurrent_kernel.T``.

    Args:
        recurrent_activation: gate activation (default sigmoid).
        others: see :class:`RNN`.
    Params: ``kernel (features, 3·units)``, ``recurrent_kernel (units, 3·units)``,
    ``bias (3·units,)``, ``recurrent_bias (3·units,)``.
    Example:
        >>> Model([GRU(128, inshape=(28, 28)), Dense(10, activation='softmax')])
    """

    _n_gates = 3

    def __init__(self, units: int, activation="tanh", recurrent_activation="sigmoid", **kwargs):
        super().__init__(units, activation=activation, **kwargs)
        self.recurrent_activation = activations.get(recurrent_activation)
        self._ract = _Act(self.recurrent_activation)

    def _build_extra(self):
        self.recurrent_bias = self.add_param("recurrent_bias", (3 * self.units,), self.bias_initializer,
                                             self.bias_regularizer) if self.use_bias else None

    def _run(self, zx, states):
        xp = backend.xp
        steps, batch, _ = zx.shape
        u = self.units
        dt = self.dtype
        # Gate math on column slices of (batch, 3u) rows pays numpy's per-row loop overhead on
        # every op (a (128, 128) slice costs about three times a contiguous block of twice its
        # size), so the gates live gate-major, (T, 3, batch, units): each gate is one contiguous
        # block and only the two ops that read h·U and x·W per step see the (batch, 3u) layout.
        gates = xp.empty((steps, 3, batch, u), dtype=dt)  # activated r, z, n
        # pre-activations, kept only for an activation whose derivative needs them (not tanh/sigmoid)
        pre = None if (self._ract.kind and self._act.kind) else xp.empty_like(gates)
        hun = xp.empty((steps, batch, u), dtype=dt)  # h·Un + bun of every step (dL/dr needs it)
        hu = xp.empty((batch, 3 * u), dtype=dt)
        h = xp.empty((steps + 1, batch, u), dtype=dt)
        h[0] = states[0]
        u_mat = self.recurrent_kernel.value
        for t in range(steps):
            a = gates[t]
            p = a if pre is None else pre[t]
            xp.matmul(self._rec_input(h[t]), u_mat, out=hu)  # (batch, units) @ (units, 3u)
            if self.recurrent_bias is not None:
                hu += self.recurrent_bias.value
            zt, ht = zx[t].reshape(batch, 3, u), hu.reshape(batch, 3, u)
            xp.add(zt[:, :2].transpose(1, 0, 2), ht[:, :2].transpose(1, 0, 2), out=p[:2])  # r, z: (2, batch, u)
            self._ract.forward(p[:2], a[:2])
            hn = hun[t]
            hn[...] = ht[:, 2]
            xp.multiply(a[0], hn, out=p[2])
            p[2] += zt[:, 2]  # x·Wn + bn + r·(h·Un + bun)
            self._act.forward(p[2], a[2])
            # h' = n + z·(h − n)
            hnew = h[t + 1]
            xp.subtract(h[t], a[2], out=hnew)
            hnew *= a[1]
            hnew += a[2]
            self._carry(h, t)
        self._z, self._gates, self._hu, self._h = pre, gates, hun, h
        return h

    def _state_seqs(self):
        return [self._h]

    def _bptt(self, dseq, dlast):
        xp = backend.xp
        steps, u = self._steps, self.units
        gates, hun, h = self._gates, self._hu, self._h
        pre = gates if self._z is None else self._z
        batch = h.shape[1]
        dzx = xp.empty((steps, batch, 3 * u), dtype=self.dtype)
        dzh = xp.empty_like(dzx)
        da = xp.empty_like(gates[0])  # dL/d(activated r, z, n) of one step, gate-major
        dp = xp.empty_like(gates[0])  # dL/d(their pre-activations)
        dh = dlast[0]
        for t in range(steps - 1, -1, -1):
            if dseq is not None:
                dh = dh + dseq[t]
            dnew, carry = self._split_masked(dh, t)
            a, p = gates[t], pre[t]
            r, zg, n = a[0], a[1], a[2]
            xp.subtract(1.0, zg, out=da[2])
            da[2] *= dnew  # dn = dh * (1 - z)
            xp.subtract(h[t], n, out=da[1])
            da[1] *= dnew  # dz = dh * (h - n)
            self._act.backward(p[2], n, da[2], dp[2])  # d pre-activation of n
            xp.multiply(dp[2], hun[t], out=da[0])  # dr = dn_pre * (h·Un + bun)
            self._ract.backward(p[:2], a[:2], da[:2], dp[:2])
            # back to the (batch, 3u) layout of the GEMMs: dzx, and dzh (n scaled by r)
            dzx[t].reshape(batch, 3, u)[...] = dp.transpose(1, 0, 2)
            dht = dzh[t].reshape(batch, 3, u)
            dht[:, :2] = dp[:2].transpose(1, 0, 2)
            xp.multiply(dp[2], r, out=dht[:, 2])
            dh_direct = dnew * zg
            dh = self._dh_prev(dzh[t])
            dh += dh_direct
            if carry is not None:
                dh += carry
        self.initial_state_grads = [dh]
        return dzx, dzh

    def _extra_grads(self, gh):
        if self.recurrent_bias is not None:
            self.recurrent_bias.grad = gh.sum(axis=0)

    def get_config(self):
        cfg = super().get_config()
        cfg.update(recurrent_activation=activations.serialize(self.recurrent_activation))
        return cfg
