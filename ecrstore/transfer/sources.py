"""Where a source's bytes are: a tar archive (plain or compressed) or a directory.

A :class:`Tree` answers, for a relative path inside the source, the byte range that holds the
file (:class:`Extent`: an open descriptor, an offset and a size, valid while it is open). In an uncompressed tar every
regular member is one contiguous range of the archive, found by reading the headers only
(``tarfile`` seeks over member data); the importer then hands those ranges to the store
without reading them through Python buffers. A compressed archive is decompressed once into
an unnamed temporary file (gone when closed, even after SIGKILL) and treated the same way.

Safety: a member name that is absolute or has a ``..`` component, and a link whose target
leaves the archive, make the whole archive refused; in a directory, a file that resolves
(through symbolic links) outside the directory is refused when it is used. A truncated or
corrupt archive is refused: every member must lie inside the file and the headers must end
with tar's end-of-archive block.
"""

from __future__ import annotations

import bz2
import contextlib
import dataclasses
import lzma
import os
import stat
import tarfile
import tempfile
import zlib
from collections.abc import Callable, Iterator
from typing import TYPE_CHECKING, BinaryIO, TypeAlias

from .errors import SourceError

if TYPE_CHECKING:
    # zlib's decompressor type has no public name; only the type stubs know it.
    _Decompressor: TypeAlias = zlib._Decompress | bz2.BZ2Decompressor | lzma.LZMADecompressor

__all__ = ["Extent", "Tree", "ArchiveTree", "DirTree", "open_tree", "clean_path", "MAX_METADATA"]

#: Largest file read into memory (manifests, configs, index.json, manifest.json). ECR's
#: manifest limit is 4 MiB; image configs are far smaller than this.
MAX_METADATA = 64 * 2**20

_BLOCK = tarfile.BLOCKSIZE
_MAX_LINK_HOPS = 40
_COPY_CHUNK = 4 * 2**20
# Leading bytes of the compressed formats a source may come in.
_MAGIC = (
    (b"\x1f\x8b", "gzip"),
    (b"BZh", "bzip2"),
    (b"\xfd7zXZ\x00", "xz"),
    (b"\x28\xb5\x2f\xfd", "zstd"),
)


@dataclasses.dataclass(frozen=True, slots=True)
class Extent:
    """Bytes ``[offset, offset + size)`` of the open descriptor ``fd``.

    ``whole_file`` says the range is the entire file (the store can then take the descriptor
    itself). ``label`` names the file for messages: ``"blobs/sha256/ab… in image.tar"``.
    """

    fd: int
    offset: int
    size: int
    whole_file: bool
    label: str


def clean_path(name: str, where: str) -> str:
    """A source-relative path in normal form (no ``.`` parts, no repeated or trailing
    slashes). Raises SourceError for an absolute path or a ``..`` component: ``where`` says
    where the name was found, for the message."""
    if name.startswith("/"):
        raise SourceError(f"{where}: refusing the absolute path {name!r} (it would point outside the source)")
    parts = []
    for part in name.split("/"):
        if part in ("", "."):
            continue
        if part == "..":
            raise SourceError(f"{where}: refusing the path {name!r}: its '..' would point outside the source")
        parts.append(part)
    return "/".join(parts)


class Tree:
    """The files of a source, by relative path. Opening and closing the tree are not
    thread-safe; :meth:`size`, :meth:`open` and :meth:`read` may be called from any number of
    threads at once."""

    label: str

    def has(self, name: str) -> bool:
        raise NotImplementedError

    def size(self, name: str) -> int:
        """The size of a regular file. SourceError when it is missing, not a regular file, or
        (in a directory) leads outside the source."""
        raise NotImplementedError

    def open(self, name: str) -> contextlib.AbstractContextManager[Extent]:
        """The byte range of a regular file, readable until the context ends (a directory's
        file is opened for that long only). Errors as for :meth:`size`."""
        raise NotImplementedError

    def read(self, name: str, limit: int = MAX_METADATA) -> bytes:
        """The whole content of a small file (metadata). SourceError beyond ``limit`` bytes."""
        with self.open(name) as ext:
            if ext.size > limit:
                raise SourceError(f"{ext.label} is {ext.size} bytes: metadata files over {limit} bytes are refused")
            try:
                data = os.pread(ext.fd, ext.size, ext.offset)
                while len(data) < ext.size:  # pread may answer short on some file systems
                    more = os.pread(ext.fd, ext.size - len(data), ext.offset + len(data))
                    if not more:
                        raise SourceError(f"{ext.label} ends before its stated size ({ext.size} bytes)")
                    data += more
            except OSError as e:
                raise SourceError(f"cannot read {ext.label}: {e.strerror or e}") from e
        return data

    def close(self) -> None:
        raise NotImplementedError

    def __enter__(self) -> Tree:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


@dataclasses.dataclass(frozen=True, slots=True)
class _Member:
    kind: str  # "file", "dir", "symlink", "hardlink", "other"
    offset: int = 0
    size: int = 0
    target: str = ""  # links: the archive path they resolve to (lexically)
    sparse: bool = False


class ArchiveTree(Tree):
    """The members of a tar archive held in ``fileobj`` (seekable, with a descriptor).

    Reads the headers only. Raises SourceError when the file is not a tar archive, is
    truncated or corrupt, or names a member or link outside itself.
    """

    def __init__(self, fileobj: BinaryIO, label: str, *, compressed: str | None = None) -> None:
        self.label = label
        self.compressed = compressed
        self._file = fileobj
        self._fd = fileobj.fileno()
        self._members: dict[str, _Member] = {}
        try:
            self._scan()
        except BaseException:
            fileobj.close()
            raise

    def _scan(self) -> None:
        size = os.fstat(self._fd).st_size
        where = f"{self.label}"
        try:
            self._file.seek(0)
            tf = tarfile.open(fileobj=self._file, mode="r:")
            with tf:
                for ti in tf:
                    self._add(ti, where)
                end = tf.offset
        except tarfile.ReadError as e:
            problem = "is truncated" if "unexpected end of data" in str(e) else f"is not a valid tar archive ({e})"
            raise SourceError(f"{where} {problem}") from e
        except (tarfile.TarError, EOFError, ValueError, UnicodeError) as e:
            raise SourceError(f"{where} is not a valid tar archive ({e})") from e
        except OSError as e:
            raise SourceError(f"cannot read {where}: {e.strerror or e}") from e
        # tarfile stops quietly at a damaged or cut header after the first member; tar's own
        # end marker (a zero block) must follow the last member, or the archive is incomplete.
        tail = os.pread(self._fd, _BLOCK, end)
        if len(tail) < _BLOCK or tail.count(0) != _BLOCK:
            state = "is truncated" if len(tail) < _BLOCK else "is corrupt"
            raise SourceError(f"{where} {state}: no valid tar header or end-of-archive marker at byte {end}")
        for name, m in self._members.items():
            if m.kind == "file" and m.offset + m.size > size:
                raise SourceError(f"{where} is truncated: member {name} ends past the end of the file")

    def _add(self, ti: tarfile.TarInfo, where: str) -> None:
        name = clean_path(ti.name, f"{where}: member {ti.name!r}")
        if not name:
            return  # "./" itself
        if ti.issym():
            base = name.rsplit("/", 1)[0] if "/" in name else ""
            target = _resolve_lexically(base, ti.linkname)
            if target is None:
                raise SourceError(
                    f"{where}: member {name} is a symbolic link to {ti.linkname!r}, outside the archive; refusing it"
                )
            self._members[name] = _Member("symlink", target=target)
        elif ti.islnk():
            target = clean_path(ti.linkname, f"{where}: hard link {name}")
            self._members[name] = _Member("hardlink", target=target)
        elif ti.isreg():
            self._members[name] = _Member("file", ti.offset_data, ti.size, sparse=ti.issparse())
        elif ti.isdir():
            self._members[name] = _Member("dir")
        else:
            self._members[name] = _Member("other")

    def _lookup(self, name: str) -> tuple[str, _Member | None]:
        """Follow links (in any component) inside the archive; answer (path, member)."""
        parts = [p for p in name.split("/") if p]
        done: list[str] = []
        hops = 0
        while parts:
            part = parts.pop(0)
            path = "/".join(done + [part])
            m = self._members.get(path)
            if m is not None and m.kind in ("symlink", "hardlink"):
                hops += 1
                if hops > _MAX_LINK_HOPS:
                    raise SourceError(f"{self.label}: too many levels of links resolving {name}")
                parts = [p for p in m.target.split("/") if p] + parts
                done = []
                continue
            done.append(part)
        path = "/".join(done)
        return path, self._members.get(path)

    def has(self, name: str) -> bool:
        return self._lookup(name)[1] is not None

    def _member(self, name: str) -> _Member:
        _, m = self._lookup(name)
        label = f"{name} in {self.label}"
        if m is None:
            raise SourceError(f"{label}: no such member")
        if m.kind != "file":
            raise SourceError(f"{label}: not a regular file")
        if m.sparse:
            raise SourceError(f"{label}: sparse members are not supported")
        return m

    def size(self, name: str) -> int:
        return self._member(name).size

    @contextlib.contextmanager
    def open(self, name: str) -> Iterator[Extent]:
        m = self._member(name)
        yield Extent(self._fd, m.offset, m.size, False, f"{name} in {self.label}")

    def close(self) -> None:
        self._file.close()


def _resolve_lexically(base: str, target: str) -> str | None:
    """A symbolic link's target as an archive path, or None when it leaves the archive."""
    if target.startswith("/"):
        return None
    parts = base.split("/") if base else []
    for part in target.split("/"):
        if part in ("", "."):
            continue
        if part == "..":
            if not parts:
                return None
            parts.pop()
        else:
            parts.append(part)
    return "/".join(parts)


class DirTree(Tree):
    """The files under a directory (an OCI image layout, or an extracted ``docker save``)."""

    def __init__(self, root: str) -> None:
        self.label = root
        self._root = os.path.realpath(root)

    def _path(self, name: str) -> str:
        return os.path.join(self._root, clean_path(name, self.label))

    def has(self, name: str) -> bool:
        return os.path.lexists(self._path(name))

    def _open_fd(self, name: str) -> tuple[int, int]:
        label = f"{name} in {self.label}"
        real = os.path.realpath(self._path(name))
        if real != self._root and not real.startswith(self._root + os.sep):
            raise SourceError(f"{label} is a symbolic link that leads outside the directory (to {real}); refusing it")
        try:
            fd = os.open(real, os.O_RDONLY | os.O_CLOEXEC | os.O_NOFOLLOW | os.O_NONBLOCK)
        except FileNotFoundError:
            raise SourceError(f"{label}: no such file") from None
        except OSError as e:
            raise SourceError(f"cannot open {label}: {e.strerror or e}") from e
        st = os.fstat(fd)
        if not stat.S_ISREG(st.st_mode):
            os.close(fd)
            raise SourceError(f"{label}: not a regular file")
        return fd, st.st_size

    def size(self, name: str) -> int:
        fd, size = self._open_fd(name)
        os.close(fd)
        return size

    @contextlib.contextmanager
    def open(self, name: str) -> Iterator[Extent]:
        fd, size = self._open_fd(name)
        try:
            yield Extent(fd, 0, size, True, f"{name} in {self.label}")
        finally:
            os.close(fd)

    def close(self) -> None:
        pass


def open_tree(path: str, *, tmp_dir: str | None = None, notify: Callable[[str], None] | None = None) -> Tree:
    """The tree of ``path``: a directory, or a tar archive (plain, gzip, bzip2 or xz).

    A compressed archive is decompressed into an unnamed temporary file in ``tmp_dir``
    (default: the system's temporary directory), which needs room for the uncompressed
    archive. Raises SourceError.
    """
    try:
        st = os.stat(path)
    except FileNotFoundError:
        raise SourceError(f"{path}: no such file or directory") from None
    except OSError as e:
        raise SourceError(f"cannot read {path}: {e.strerror or e}") from e
    if stat.S_ISDIR(st.st_mode):
        return DirTree(path)
    if not stat.S_ISREG(st.st_mode):
        raise SourceError(f"{path} is neither a directory nor a regular file")
    try:
        f = open(path, "rb")
    except OSError as e:
        raise SourceError(f"cannot open {path}: {e.strerror or e}") from e
    try:
        head = f.read(8)
    except OSError as e:
        f.close()
        raise SourceError(f"cannot read {path}: {e.strerror or e}") from e
    kind = next((k for magic, k in _MAGIC if head.startswith(magic)), None)
    if kind is None:
        return ArchiveTree(f, path)
    if kind == "zstd":
        f.close()
        raise SourceError(f"{path} is zstd-compressed, which is not supported: decompress it first (zstd -d)")
    if notify is not None:
        notify(f"decompressing {path} ({kind})")
    with f:
        tmp = _decompress(f, kind, path, tmp_dir)
    return ArchiveTree(tmp, path, compressed=kind)


def _decompress(src: BinaryIO, kind: str, label: str, tmp_dir: str | None) -> BinaryIO:
    """Decompress all of ``src`` (every concatenated stream) into an unnamed temporary file.
    Output is produced at most ``_COPY_CHUNK`` bytes at a time, so a small input that expands
    enormously never sits in memory whole."""
    try:
        out = tempfile.TemporaryFile(dir=tmp_dir)
    except OSError as e:
        where = tmp_dir or tempfile.gettempdir()
        raise SourceError(f"cannot create a temporary file in {where}: {e.strerror or e}") from e
    try:
        src.seek(0)
        dec, fed = _decompressor(kind), False
        while True:
            try:
                chunk = src.read(_COPY_CHUNK)
            except OSError as e:
                raise SourceError(f"cannot read {label}: {e.strerror or e}") from e
            if not chunk:
                break
            while chunk:
                fed = True
                rest = _feed(dec, kind, chunk, out, label)
                chunk = b""
                if rest is not None:  # a stream ended: another may follow (pigz, cat a.gz b.gz)
                    dec, fed = _decompressor(kind), False
                    if rest.strip(b"\0"):  # zero padding after the last stream is ignored
                        chunk = rest
        if fed and not dec.eof:
            raise SourceError(f"{label} is truncated: the {kind} data ends before its end-of-stream marker")
        out.flush()
        out.seek(0)
        return out
    except BaseException:
        out.close()
        raise


def _feed(dec: _Decompressor, kind: str, data: bytes, out: BinaryIO, label: str) -> bytes | None:
    """Decompress ``data`` into ``out``; answer the input left after the end of the stream
    (None when the stream has not ended)."""
    while True:
        try:
            produced = dec.decompress(data, _COPY_CHUNK)
        except (zlib.error, OSError, EOFError, lzma.LZMAError, ValueError) as e:
            raise SourceError(f"{label} is not valid {kind} data ({e})") from e
        _write_all(out, produced)
        if dec.eof:
            return dec.unused_data
        if isinstance(dec, (bz2.BZ2Decompressor, lzma.LZMADecompressor)):
            data = b""
            more = not dec.needs_input
        else:  # gzip: zlib keeps the input it has not used yet
            data = dec.unconsumed_tail
            more = bool(data) or len(produced) == _COPY_CHUNK
        if not more:
            return None


def _write_all(out: BinaryIO, data: bytes) -> None:
    try:
        out.write(data)
    except OSError as e:
        raise SourceError(f"cannot write the decompressed archive to a temporary file: {e.strerror or e}") from e


def _decompressor(kind: str) -> _Decompressor:
    if kind == "gzip":
        return zlib.decompressobj(wbits=31)
    if kind == "bzip2":
        return bz2.BZ2Decompressor()
    return lzma.LZMADecompressor(format=lzma.FORMAT_XZ)
