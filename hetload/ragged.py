"""``Ragged``: one variable-length field of a batch, stored packed.

A batch of ``B`` items, item ``i`` holding ``N_i`` rows of trailing shape ``D``, is stored as

- ``values``:  ``[sum N_i, *D]``, the rows of every item back to back (the *packed* view);
- ``offsets``: ``int64 [B+1]``, ``offsets[0] == 0``, item ``i`` is
  ``values[offsets[i]:offsets[i+1]]`` (the same meaning as ``torch.nested`` offsets and
  flash-attention's ``cu_seqlens``).

Everything else (``lengths``, ``batch_idx``, ``max_len``, ``mask``, ``padded``) is derived on first
use and cached. ``max_len`` is a host ``int`` computed while ``offsets`` is still on the CPU and
carried along by :meth:`Ragged.to`, so asking for a padded view on a GPU never waits for the device.

An *index field* (faces, edges) holds row indices into another field, re-based into that field's
packed numbering (global indices). It carries the other field's ``offsets`` as ``index_base`` so its
padded view can be returned in local numbering with ``-1`` as padding, PyTorch3D's convention.
"""

from __future__ import annotations

import operator
from collections.abc import Sequence
from typing import Any

import numpy as np
import torch

from hetload import ops
from hetload.ops.buckets import bucket_length
from hetload.ops.traced import assert_longest_at_most, compiling
from hetload.ops.validation import check_max_len, check_offsets, fill_key, longest
from hetload.sample_values import check_column, ragged_tensor

__all__ = ["Ragged"]


class Ragged:
    """A packed ragged tensor with cached list / padded views.

    Args:
        values: ``[sum N_i, *D]`` packed rows, any dtype.
        offsets: ``int64 [B+1]``, starts at 0, non-decreasing, ends at ``values.shape[0]``.
        name: the field's name, used in every error message.
        index_base: for index fields only: ``int64 [B+1]`` offsets of the field indexed into;
            ``values`` then hold global row numbers into that field's packed values.
        max_len: the longest item (or more), if the caller already knows it: a host ``int``
            that skips a pass over offsets, and under ``torch.compile`` the only way to get a
            padded view without reading the device.
        validate: check the offsets invariants and ``max_len`` once, here (on by default; one
            pass over ``B+1`` integers, a device sync if ``offsets`` is on a GPU). Under
            ``torch.compile`` the checks are in-graph asserts instead (no sync; a violation is
            a ``RuntimeError`` naming the field). Views and ops of a ``Ragged`` never check
            again, so after construction nothing in them synchronizes with the device.

    Raises:
        ValueError: naming ``name`` when the offsets invariants do not hold, or ``max_len`` is
            shorter than the longest item.

    Compiling: ``torch.compile(fullgraph=True)`` traces ``Ragged(values, offsets,
    max_len=m).padded()``, ``.mask`` and :func:`hetload.ops.padded_to_packed` (with
    ``total=``) without graph breaks; ``padded(multiple_of=...)`` keeps the distinct padded
    shapes of a run to ``O(log max_len)`` (:func:`hetload.ops.bucket_length`).
    """

    __slots__ = (
        "_batch_idx",
        "_lengths",
        "_mask",
        "_max_len",
        "_padded",
        "index_base",
        "name",
        "offsets",
        "values",
    )

    def __init__(
        self,
        values: torch.Tensor,
        offsets: torch.Tensor,
        *,
        name: str = "values",
        index_base: torch.Tensor | None = None,
        max_len: int | None = None,
        validate: bool = True,
    ) -> None:
        if not isinstance(values, torch.Tensor):
            raise TypeError(f"field {name!r}: values must be a torch.Tensor, got {type(values)}")
        if not isinstance(offsets, torch.Tensor):
            raise TypeError(f"field {name!r}: offsets must be a torch.Tensor, got {type(offsets)}")
        if values.dim() == 0:
            raise ValueError(f"field {name!r}: values must have at least one dimension (rows)")
        if not isinstance(name, str):
            raise TypeError(f"a field name is a str, got {type(name).__name__}")
        if index_base is not None and not isinstance(index_base, torch.Tensor):
            raise TypeError(f"field {name!r}: index_base must be a torch.Tensor or None")
        if index_base is not None and (
            values.is_floating_point() or values.is_complex() or values.dtype == torch.bool
        ):
            raise ValueError(f"field {name!r}: an index field must be integer, got {values.dtype}")
        if max_len is not None and not isinstance(max_len, torch.SymInt):  # traced: symbolic
            max_len = check_max_len(max_len, name)
        for what, t in (("offsets", offsets), ("index_base", index_base)):
            if t is not None and t.device != values.device:
                raise ValueError(
                    f"field {name!r}: values are on {values.device} but {what} on {t.device}"
                )
        if validate:
            check_offsets(offsets, values.shape[0], name)
            if index_base is not None:
                check_offsets(index_base, None, f"{name} (index_base)")
                if index_base.shape != offsets.shape:
                    raise ValueError(
                        f"field {name!r}: index_base has {index_base.numel() - 1} items, "
                        f"offsets {offsets.numel() - 1}"
                    )
            if max_len is not None:
                _check_max_len(offsets, max_len, name)
        self._set(values, offsets, name, index_base, max_len)

    def _set(
        self,
        values: torch.Tensor,
        offsets: torch.Tensor,
        name: str,
        index_base: torch.Tensor | None,
        max_len: int | None,
    ) -> None:
        """Every slot, the parts given and the caches empty (``__init__`` and
        :meth:`_trusted` both end here, so they cannot drift apart)."""
        self.values = values
        self.offsets = offsets
        self.name = name
        self.index_base = index_base
        self._max_len = max_len
        self._lengths: torch.Tensor | None = None
        self._batch_idx: torch.Tensor | None = None
        self._mask: torch.Tensor | None = None
        self._padded: dict[Any, torch.Tensor] = {}

    @classmethod
    def _trusted(
        cls,
        values: torch.Tensor,
        offsets: torch.Tensor,
        name: str,
        index_base: torch.Tensor | None,
        max_len: int | None,
    ) -> Ragged:
        """A ``Ragged`` of parts this library built and checked already, with no check at all:
        for a batch a DataLoader worker sent, rebuilt for every batch the main process gets."""
        self = cls.__new__(cls)
        self._set(values, offsets, name, index_base, max_len)
        return self

    # ------------------------------------------------------------------ constructors
    @classmethod
    def from_list(
        cls,
        items: Sequence[torch.Tensor | np.ndarray],
        *,
        name: str = "values",
        dtype: torch.dtype | None = None,
        device: torch.device | str | None = None,
    ) -> Ragged:
        """Pack ``B`` tensors ``[N_i, *D]`` (same trailing shape and dtype) into one ``Ragged``.

        An empty list needs ``dtype`` to be meaningful; it gives ``values [0]`` and ``offsets [0]``
        (``B == 0``).
        """
        if isinstance(items, (torch.Tensor, np.ndarray)) or not isinstance(items, Sequence):
            raise TypeError(f"field {name!r}: from_list takes a list of [N_i, ...] tensors")
        # the same conversions and refusals as collate (hetload.sample_values); autograd is
        # kept, since torch.cat below is differentiable
        tensors = [
            ragged_tensor(name, i, t, allow_grad=True, item="item") for i, t in enumerate(items)
        ]
        if dtype is not None:
            tensors = [t.to(dtype) for t in tensors]
        check_column(name, tensors, item="item")
        lengths = [t.shape[0] for t in tensors]
        offsets = torch.zeros(len(tensors) + 1, dtype=torch.int64)
        if tensors:
            torch.cumsum(torch.tensor(lengths, dtype=torch.int64), 0, out=offsets[1:])
            values = torch.cat(tensors)
        else:
            values = torch.empty(0, dtype=dtype or torch.float32)
        ragged = cls(values, offsets, name=name, max_len=max(lengths, default=0), validate=False)
        return ragged.to(device) if device is not None else ragged

    @classmethod
    def from_padded(
        cls,
        padded: torch.Tensor,
        lengths: torch.Tensor | Sequence[int],
        *,
        name: str = "values",
    ) -> Ragged:
        """Pack ``padded [B, L, *D]`` keeping the first ``lengths[i]`` rows of item ``i``
        (``lengths``: ``B`` integers, a list or an integer tensor)."""
        if not isinstance(padded, torch.Tensor):
            raise TypeError(f"field {name!r}: padded must be a torch.Tensor, got {type(padded)}")
        if padded.dim() < 2:
            raise ValueError(
                f"field {name!r}: padded must be [B, L, ...], got {tuple(padded.shape)}"
            )
        lengths_t = torch.as_tensor(lengths)
        if lengths_t.is_floating_point() or lengths_t.is_complex() or lengths_t.dtype == torch.bool:
            raise ValueError(
                f"field {name!r}: lengths must be integers, got {lengths_t.dtype} "
                "(a fractional length would be truncated)"
            )
        if lengths_t.dim() != 1:
            raise ValueError(f"field {name!r}: lengths must be 1-D, got {tuple(lengths_t.shape)}")
        lengths_t = lengths_t.to(torch.int64).cpu()
        if lengths_t.numel() != padded.shape[0]:
            raise ValueError(
                f"field {name!r}: {lengths_t.numel()} lengths for a padded batch "
                f"of {padded.shape[0]}"
            )
        if lengths_t.numel() and (lengths_t.min() < 0 or lengths_t.max() > padded.shape[1]):
            raise ValueError(
                f"field {name!r}: lengths must lie in [0, {padded.shape[1]}], "
                f"got min {int(lengths_t.min())} max {int(lengths_t.max())}"
            )
        offsets = torch.zeros(lengths_t.numel() + 1, dtype=torch.int64)
        torch.cumsum(lengths_t, 0, out=offsets[1:])
        offsets = offsets.to(padded.device)
        total = int(lengths_t.sum())
        values = ops.padded_to_packed(padded, offsets, total=total, validate=False)
        max_len = int(lengths_t.max()) if lengths_t.numel() else 0
        return cls(values, offsets, name=name, max_len=max_len, validate=False)

    # ------------------------------------------------------------------ derived views
    @property
    def batch_size(self) -> int:
        """``B``, the number of items."""
        return self.offsets.shape[0] - 1

    def __len__(self) -> int:
        return self.batch_size

    @property
    def lengths(self) -> torch.Tensor:
        """``int64 [B]``: rows per item (``offsets[1:] - offsets[:-1]``)."""
        if self._lengths is None:
            self._lengths = self.offsets[1:] - self.offsets[:-1]
        return self._lengths

    @property
    def max_len(self) -> int:
        """Rows of the longest item, a host ``int`` (0 for an empty batch)."""
        if self._max_len is None:
            lengths = self.lengths
            self._max_len = int(lengths.max()) if lengths.numel() else 0
        return self._max_len

    @property
    def batch_idx(self) -> torch.Tensor:
        """``int64 [sum N_i]``: the item each packed row belongs to (PyG's ``batch``)."""
        if self._batch_idx is None:
            self._batch_idx = torch.repeat_interleave(
                torch.arange(self.batch_size, device=self.offsets.device),
                self.lengths,
                output_size=self.values.shape[0],
            )
        return self._batch_idx

    @property
    def mask(self) -> torch.Tensor:
        """``bool [B, max_len]``: True where the padded view holds a real row."""
        if self._mask is None:
            self._mask = self.padding_mask()
        return self._mask

    def padded_len(self, multiple_of: int | None = None) -> int:
        """Rows per item of the padded view: ``max_len``, or its bucket
        (:func:`hetload.ops.bucket_length`) when ``multiple_of`` is given."""
        if multiple_of is None:
            return self.max_len
        return bucket_length(self.max_len, multiple_of)

    def padding_mask(self, multiple_of: int | None = None) -> torch.Tensor:
        """``bool [B, padded_len(multiple_of)]``: the mask of ``padded(multiple_of=...)``."""
        steps = torch.arange(self.padded_len(multiple_of), device=self.offsets.device)
        return steps.unsqueeze(0) < self.lengths.unsqueeze(1)

    def padded(
        self, fill: float | None = None, *, local: bool = True, multiple_of: int | None = None
    ) -> torch.Tensor:
        """The padded view ``[B, L, *D]``, rows past ``N_i`` set to ``fill``; cached per
        ``(fill, local, multiple_of)``.

        ``L`` is ``max_len``, or with ``multiple_of`` its bucket (a multiple of ``multiple_of``,
        :func:`hetload.ops.bucket_length`): a run then sees ``O(log max_len)`` distinct shapes,
        so a model compiled on padded batches recompiles that often at most;
        :meth:`padding_mask` gives the matching mask.

        For an index field, ``fill`` defaults to ``-1`` and the indices are local to each item
        (``local=True``, PyTorch3D's convention); ``local=False`` keeps the global numbering.
        For other fields ``fill`` defaults to ``0``. The fill is stored exactly or refused
        (:func:`hetload.ops.packed_to_padded`): an unsigned index field has no ``-1``, so it
        needs an explicit ``fill``. A few recent fills are cached.
        """
        is_index = self.index_base is not None
        if fill is None:
            fill = -1 if is_index else 0.0
        key = (fill_key(fill), bool(local) and is_index, multiple_of)
        cached = self._padded.get(key)
        if cached is not None:
            return cached
        length = self.padded_len(multiple_of)
        if is_index and local:
            out = ops.packed_to_padded_local(
                self.values,
                self.offsets,
                self.index_base,
                max_len=length,
                fill=fill,
                name=self.name,
                validate=False,
            )
        else:
            out = ops.packed_to_padded(
                self.values,
                self.offsets,
                max_len=length,
                fill=fill,
                name=self.name,
                validate=False,
            )
        if len(self._padded) >= _CACHED_FILLS:  # a fill per call must not grow memory
            self._padded.pop(next(iter(self._padded)))
        self._padded[key] = out
        return out

    def unbind(self, *, local: bool = True) -> list[torch.Tensor]:
        """The list view: ``B`` tensors ``[N_i, *D]``, views into ``values`` (no copies).

        An index field's items are in each item's own (local) numbering, as ``padded()`` and
        ``HeteroBatch.sample(i)`` give them (new tensors, since the numbers change);
        ``local=False`` gives views in the packed (global) numbering.
        """
        bounds = self.offsets.tolist()
        items = [self.values[bounds[i] : bounds[i + 1]] for i in range(self.batch_size)]
        if local and self.index_base is not None:
            base = self.index_base.tolist()
            items = [shift_indices(item, base[i]) for i, item in enumerate(items)]
        return items

    def __getitem__(self, i: int | slice) -> torch.Tensor | Ragged:
        """Item ``i`` as a view ``[N_i, *D]`` (global numbering for index fields), or, for a
        slice of items (step 1), a ``Ragged`` of those items (index fields re-based so that
        they index the same slice of their target)."""
        if isinstance(i, slice):
            return self._slice(i)
        try:
            i = operator.index(i)
        except TypeError:
            raise TypeError(
                f"field {self.name!r}: index items with an int or a slice, not {type(i).__name__}"
            ) from None
        b = self.batch_size
        if not -b <= i < b:
            raise IndexError(f"field {self.name!r}: item {i} out of range for a batch of {b}")
        i %= b
        start, end = self.offsets[i : i + 2].tolist()
        return self.values[start:end]

    def _slice(self, items: slice) -> Ragged:
        start, stop, step = items.indices(self.batch_size)
        if step != 1:
            raise ValueError(f"field {self.name!r}: a slice of items must have step 1, got {step}")
        stop = max(start, stop)
        offsets = self.offsets[start : stop + 1]
        first = int(offsets[0])
        values = self.values[first : int(offsets[-1])]
        base = None
        if self.index_base is not None:
            base = self.index_base[start : stop + 1]
            shift = int(base[0])
            base = base - shift
            values = shift_indices(values, shift) if shift else values
        return Ragged(values, offsets - first, name=self.name, index_base=base, validate=False)

    # ------------------------------------------------------------------ movement
    def to(self, *args: Any, non_blocking: bool = False, **kwargs: Any) -> Ragged:
        """Move/cast like ``Tensor.to``; offsets keep int64. ``max_len`` travels as a host int.

        A dtype argument applies to ``values`` of data fields only: an index field keeps its
        integer dtype.
        """
        if self.index_base is not None:
            args, kwargs = device_only(args, kwargs)
        values = self.values.to(*args, non_blocking=non_blocking, **kwargs)
        if values.device == self.offsets.device:
            offsets = self.offsets
            base = self.index_base
        else:
            offsets = self.offsets.to(values.device, non_blocking=non_blocking)
            base = (
                None
                if self.index_base is None
                else self.index_base.to(values.device, non_blocking=non_blocking)
            )
        if values is self.values and offsets is self.offsets:
            return self
        return self._derive(values, offsets, base)

    def pin_memory(self) -> Ragged:
        """Copy values and offsets into page-locked memory (for ``non_blocking`` transfers)."""
        base = None if self.index_base is None else self.index_base.pin_memory()
        return self._derive(self.values.pin_memory(), self.offsets.pin_memory(), base)

    def is_pinned(self) -> bool:
        return self.values.is_pinned() and self.offsets.is_pinned()

    def share_memory_(self) -> Ragged:
        """Move the storages into shared memory in place (as ``Tensor.share_memory_``)."""
        self.values.share_memory_()
        self.offsets.share_memory_()
        if self.index_base is not None:
            self.index_base.share_memory_()
        return self

    def _derive(
        self, values: torch.Tensor, offsets: torch.Tensor, base: torch.Tensor | None
    ) -> Ragged:
        out = Ragged(
            values,
            offsets,
            name=self.name,
            index_base=base,
            max_len=self._max_len,
            validate=False,
        )
        # the per-item structure did not change, so host-side facts carry over
        if self._max_len is None and self.offsets.device.type == "cpu":
            out._max_len = self.max_len
        return out

    @property
    def device(self) -> torch.device:
        return self.values.device

    @property
    def dtype(self) -> torch.dtype:
        return self.values.dtype

    @property
    def shape(self) -> tuple[int, ...]:
        """``(sum N_i, *D)``, the packed shape."""
        return tuple(self.values.shape)

    def __repr__(self) -> str:
        kind = ", index" if self.index_base is not None else ""
        return (
            f"Ragged(name={self.name!r}, B={self.batch_size}, values={tuple(self.values.shape)}, "
            f"dtype={self.values.dtype}, device={self.values.device}{kind})"
        )

    def __reduce_ex__(self, protocol: Any) -> Any:
        # values and offsets may be views of one batch buffer at two dtypes, which torch.save
        # refuses tensor by tensor: pickle the storage once plus the views (hetload.pickling)
        from hetload.pickling import reduce_ragged

        form = reduce_ragged(self)
        return form if form is not None else object.__reduce_ex__(self, protocol)

    # Ragged travels between DataLoader workers and the main process; keep cached views out
    # of the pickle so only the packed tensors cross the process boundary.
    def __getstate__(self) -> dict[str, Any]:
        return {
            "values": self.values,
            "offsets": self.offsets,
            "name": self.name,
            "index_base": self.index_base,
            "max_len": self._max_len,
        }

    def __setstate__(self, state: dict[str, Any]) -> None:
        self.values = state["values"]
        self.offsets = state["offsets"]
        self.name = state["name"]
        self.index_base = state["index_base"]
        self._max_len = state["max_len"]
        self._lengths = None
        self._batch_idx = None
        self._mask = None
        self._padded = {}


def _check_max_len(offsets: torch.Tensor, max_len: int, name: str) -> None:
    """A given ``max_len`` must cover the longest item: a shorter one would make the padded
    view drop rows (or, in a kernel that trusts it, write into the next item)."""
    if max_len < 0:
        raise ValueError(f"field {name!r}: max_len must be >= 0, got {max_len}")
    if compiling():
        assert_longest_at_most(offsets, max_len, name)
        return
    needed = longest(offsets)
    if max_len < needed:
        raise ValueError(
            f"field {name!r}: max_len={max_len} is shorter than the longest item ({needed})"
        )


_CACHED_FILLS = 4

#: unsigned dtypes and the signed one of the same width (same bits, wrapping arithmetic)
_SIGNED = {
    torch.uint8: torch.int8,
    torch.uint16: torch.int16,
    torch.uint32: torch.int32,
    torch.uint64: torch.int64,
}


def shift_indices(values: torch.Tensor, shift: int | torch.Tensor) -> torch.Tensor:
    """``values - shift`` in ``values``' own integer dtype (global <-> local numbering of an index
    field). It runs on the signed integer of the same width, which wraps like the dtype and
    which torch subtracts for every width (it has no subtraction for uint16 / 32 / 64)."""
    signed = _SIGNED.get(values.dtype, values.dtype)
    if isinstance(shift, torch.Tensor):
        shift = shift.to(signed)
    else:
        bits = 8 * values.element_size()
        shift = (int(shift) + 2 ** (bits - 1)) % 2**bits - 2 ** (bits - 1)
    return (values.view(signed) - shift).view(values.dtype)


def device_only(args: tuple, kwargs: dict) -> tuple[tuple, dict]:
    """The ``Tensor.to`` arguments without what would change a dtype: dtype arguments are
    dropped, and ``to(other_tensor)`` (which takes ``other``'s dtype too) becomes
    ``to(other.device)``. An index field keeps its integer dtype when values are cast."""
    kept = tuple(
        a.device if isinstance(a, torch.Tensor) else a
        for a in args
        if not isinstance(a, torch.dtype)
    )
    return kept, {k: v for k, v in kwargs.items() if k != "dtype"}


def casts_float_only(dtype_args: tuple, kwargs: dict, value: torch.Tensor) -> tuple[tuple, dict]:
    """The ``to`` arguments for a data tensor of a batch: a dtype (or another tensor's dtype)
    applies to floating-point tensors only, as ``nn.Module.to`` casts only floating parameters;
    integer and bool fields (labels, uint8 colors) keep theirs."""
    if value.is_floating_point() or value.is_complex():
        return dtype_args, kwargs
    return device_only(dtype_args, kwargs)
