# cython: language_level=3, boundscheck=False, wraparound=False
"""SHA-256 over the C kernels in csrc/: buffers, the GIL and error translation, nothing more.

At import the kernel named by ``ECRSTORE_SHA256_KERNEL`` (read through
:mod:`ecrstore.settings`) becomes the active one; a name that is unknown, or that this CPU
cannot run, makes the import fail instead of falling back. Every usable kernel then has to
pass a known-answer self-test, or the import fails too.
"""

cimport cython
from cpython.bytes cimport PyBytes_FromStringAndSize
from libc.stdint cimport uint8_t, uint64_t
from libc.string cimport memcpy

from .errors import HashStateError
from .settings import sha256_kernel_demand

__all__ = ["Sha256", "sha256_kernel", "sha256_kernels", "STATE_SIZE"]

#: Length of :meth:`Sha256.export_state` (layout in csrc/sha256.h).
STATE_SIZE = ECR_SHA256_STATE_SIZE

# Inputs larger than this are hashed without the GIL. Below it, releasing and re-taking the
# GIL costs about as much as the hashing itself.
cdef size_t NOGIL_THRESHOLD = 4096

_MAGIC = b"ES2\x00"


cdef const uint8_t[::1] _byte_view(object data, str what) except *:
    """A flat unsigned-byte view of a C-contiguous buffer, without copying it."""
    cdef const uint8_t[::1] view
    if isinstance(data, str):
        raise TypeError(f"{what}: strings must be encoded before hashing")
    if data is None:  # a typed memoryview would take None as an empty view
        raise TypeError(f"{what}: a bytes-like object is required, not 'NoneType'")
    try:
        view = data  # the fast path: bytes, bytearray, mmap, 'B' memoryviews and arrays
        return view
    except (ValueError, TypeError, BufferError):
        pass
    # Other item formats and shapes (int8, float64, 2-D ...): hash their bytes, as hashlib does.
    try:
        mv = memoryview(data)
    except TypeError:
        raise TypeError(
            f"{what}: a bytes-like object is required, not {type(data).__name__!r}"
        ) from None
    if not mv.c_contiguous:
        raise ValueError(
            f"{what}: the buffer must be C-contiguous; got a non-contiguous "
            f"{type(data).__name__} (copy it first, e.g. numpy.ascontiguousarray)"
        )
    try:
        view = mv.cast("B")
    except TypeError as e:
        raise TypeError(f"{what}: cannot hash a buffer of format {mv.format!r}: {e}") from None
    return view


cdef int _init_kernel(ecr_sha256_ctx *ctx, object kernel) except -1:
    cdef bytes name
    if not isinstance(kernel, str):
        raise TypeError(f"kernel must be a str, not {type(kernel).__name__!r}")
    name = kernel.encode("utf-8", "replace")
    rc = ecr_sha256_init_kernel(ctx, name) if b"\0" not in name else ECR_SHA256_EUNKNOWN
    if rc == ECR_SHA256_EUNKNOWN:
        raise ValueError(f"unknown sha256 kernel {kernel!r} (known: {', '.join(_known_kernels())})")
    if rc == ECR_SHA256_EUNAVAILABLE:
        raise ValueError(
            f"CPU lacks {kernel}: this CPU cannot run the sha256 kernel {kernel!r} "
            f"(usable here: {', '.join(sha256_kernels())})"
        )
    return 0


cdef str _state_error(int rc, const uint8_t[::1] state):
    n = state.shape[0]
    if rc == ECR_SHA256_ESIZE:
        return f"a sha256 state is {ECR_SHA256_STATE_SIZE} bytes, got {n}"
    if rc == ECR_SHA256_EMAGIC:
        return f"not a sha256 state: magic {bytes(state[:4])!r}, expected {_MAGIC!r}"
    if rc == ECR_SHA256_EVERSION:
        return (
            f"sha256 state format version {state[4]} is not supported "
            f"(this build reads version {ECR_SHA256_STATE_VERSION})"
        )
    return ecr_sha256_strerror(rc).decode()


@cython.final
cdef class Sha256:
    """A SHA-256 computation that can be copied, paused to bytes and resumed.

    ``Sha256(data=None, *, kernel=None)``: ``kernel`` pins this object (and its copies) to one
    of :func:`sha256_kernels` instead of the active kernel; an unknown or unusable name raises
    ValueError. Every kernel gives the same results, and a state exported under one resumes
    under any other.

    Threads: :meth:`update` releases the GIL for inputs over 4 KiB, so different objects hash
    in parallel. One object is used by one thread at a time: a call made while another thread
    is inside :meth:`update` on the same object raises RuntimeError, and changes nothing.
    Nothing here touches the disk; durability is the caller's (see :meth:`export_state`).
    """

    name = "sha256"
    digest_size = ECR_SHA256_DIGEST_SIZE
    block_size = ECR_SHA256_BLOCK_SIZE

    def __cinit__(self):
        self._busy = False
        ecr_sha256_init(&self._ctx)

    def __init__(self, data=None, *, kernel=None):
        if kernel is not None:
            _init_kernel(&self._ctx, kernel)
        if data is not None:
            self.update(data)

    cdef int _claim(self, str what) except -1:
        if self._busy:
            raise RuntimeError(f"Sha256.{what}: another thread is updating this object")
        return 0

    def update(self, data):
        """Append the bytes of ``data``: any C-contiguous buffer (bytes, bytearray,
        memoryview, mmap, numpy array ...), read in place, never copied.

        Raises TypeError for a str or a non-buffer, ValueError for a non-contiguous buffer,
        RuntimeError if another thread is updating this object, OverflowError past the 2^61
        bytes SHA-256 allows. On any error the object is unchanged.
        """
        cdef const uint8_t[::1] view
        cdef size_t n
        cdef int rc
        self._claim("update")
        # No Python code runs between the check and the claim: both happen under the GIL.
        self._busy = True
        try:
            view = _byte_view(data, "Sha256.update")
            n = <size_t>view.shape[0]
            if n == 0:
                return
            if n > NOGIL_THRESHOLD:
                with nogil:
                    rc = ecr_sha256_update(&self._ctx, &view[0], n)
            else:
                rc = ecr_sha256_update(&self._ctx, &view[0], n)
        finally:
            self._busy = False
        if rc != ECR_SHA256_OK:
            raise OverflowError(f"Sha256.update: {ecr_sha256_strerror(rc).decode()}")

    def digest(self):
        """The digest (32 bytes) of everything so far; the object stays usable."""
        cdef uint8_t out[ECR_SHA256_DIGEST_SIZE]
        self._claim("digest")
        ecr_sha256_final(&self._ctx, out)
        return PyBytes_FromStringAndSize(<char *>out, ECR_SHA256_DIGEST_SIZE)

    def hexdigest(self):
        """The digest as 64 lower-case hex digits."""
        return self.digest().hex()

    def copy(self):
        """An independent object with the same state and kernel."""
        cdef Sha256 other = Sha256.__new__(Sha256)
        self._claim("copy")
        memcpy(&other._ctx, &self._ctx, sizeof(ecr_sha256_ctx))
        return other

    def export_state(self):
        """The state as :data:`STATE_SIZE` bytes, to resume with :meth:`from_state`.

        The bytes are versioned, byte-order defined and checksummed (csrc/sha256.h): they may
        be stored and resumed by another process, machine or kernel. They are a snapshot;
        writing them durably is the caller's business.
        """
        cdef uint8_t out[ECR_SHA256_STATE_SIZE]
        self._claim("export_state")
        ecr_sha256_export(&self._ctx, out)
        return PyBytes_FromStringAndSize(<char *>out, ECR_SHA256_STATE_SIZE)

    @classmethod
    def from_state(cls, state, *, kernel=None):
        """A new object resuming an :meth:`export_state` result.

        Raises :class:`ecrstore.errors.HashStateError` (a ValueError) saying what is wrong
        when ``state`` is not a well-formed state of a known format version: wrong length,
        magic or version, checksum mismatch, nonzero reserved or padding bytes, an
        impossible byte count. A damaged state never yields a wrong digest.
        """
        cdef Sha256 h = Sha256(kernel=kernel)
        cdef const uint8_t[::1] view = _byte_view(state, "Sha256.from_state")
        cdef size_t n = <size_t>view.shape[0]
        cdef int rc = ecr_sha256_import(&h._ctx, &view[0] if n else NULL, n)
        if rc != ECR_SHA256_OK:
            raise HashStateError(_state_error(rc, view))
        return h

    @property
    def nbytes(self):
        """Total bytes hashed (64-bit; counts any bytes hashed before an export)."""
        self._claim("nbytes")
        return self._ctx.count

    @property
    def kernel(self):
        """The name of the kernel this object runs on."""
        return ecr_sha256_ctx_kernel(&self._ctx).decode()

    def __reduce__(self):
        return (_restore, (self.export_state(),))

    def __repr__(self):
        return f"<ecrstore.Sha256 kernel={self.kernel} nbytes={self._ctx.count}>"


def _restore(state):
    return Sha256.from_state(state)


def sha256_kernel():
    """The name of the active kernel: ``"portable"``, ``"shani"`` or ``"armv8"``."""
    return ecr_sha256_active_kernel().decode()


def sha256_kernels():
    """The kernels this CPU can run, least preferred first (``"portable"`` always)."""
    return tuple(
        ecr_sha256_kernel_name(i).decode()
        for i in range(ecr_sha256_kernel_count())
        if ecr_sha256_kernel_usable(i)
    )


def _known_kernels():
    return tuple(ecr_sha256_kernel_name(i).decode() for i in range(ecr_sha256_kernel_count()))


def _select_demanded_kernel():
    demand = sha256_kernel_demand()
    if demand is None:
        return
    name = demand.encode("utf-8", "replace")
    rc = ecr_sha256_select(name) if b"\0" not in name else ECR_SHA256_EUNKNOWN
    if rc == ECR_SHA256_EUNKNOWN:
        raise ImportError(
            f"ECRSTORE_SHA256_KERNEL={demand!r} names no sha256 kernel "
            f"(known: {', '.join(_known_kernels())})"
        )
    if rc == ECR_SHA256_EUNAVAILABLE:
        raise ImportError(
            f"ECRSTORE_SHA256_KERNEL={demand!r}: this CPU cannot run that sha256 kernel "
            f"(usable here: {', '.join(sha256_kernels())}); refusing to fall back to another"
        )


# FIPS 180-4 examples, and a 1,000-byte message that crosses many block boundaries.
_KNOWN_ANSWERS = (
    ("'abc'", b"abc", "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad"),
    (
        "448-bit message",
        b"abcdbcdecdefdefgefghfghighijhijkijkljklmklmnlmnomnopnopq",
        "248d6a61d20638b8e5c026930c3e6039a33ce45964ff2167f6ecedd419db06c1",
    ),
    (
        "1000-byte message",
        bytes(i % 251 for i in range(1000)),
        "4e4c294b331f7a2099a379bec34b9f9fc03dc46ab465d998f4d683da53487e6d",
    ),
)


def _self_test():
    for kernel in sha256_kernels():
        for label, message, expected in _KNOWN_ANSWERS:
            whole = Sha256(message, kernel=kernel).hexdigest()
            # The same message in ragged pieces exercises the partial-block buffering.
            pieced = Sha256(kernel=kernel)
            for start, stop in ((0, 1), (1, 64), (64, 193), (193, None)):
                pieced.update(message[start:stop])
            for got in (whole, pieced.hexdigest()):
                if got != expected:
                    raise ImportError(
                        f"sha256 kernel {kernel!r} failed its self-test on the {label}: "
                        f"got {got}, expected {expected}"
                    )


_select_demanded_kernel()
_self_test()
