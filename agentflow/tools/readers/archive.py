"""Zip archives, read recursively in memory (members are never written to disk, so a member named
``../../x`` cannot escape anywhere)."""

from __future__ import annotations

import io
import zipfile
from collections.abc import Callable

from agentflow.tools.readers.errors import MissingDependencyError, ReaderError
from agentflow.tools.readers.limits import ReadLimits

#: (bytes, display name, limits, depth) -> text; supplied by the dispatcher to avoid an import cycle
MemberReader = Callable[[bytes, str, ReadLimits, int], str]


def read_zip(data: bytes, name: str, limits: ReadLimits, *, read_member: MemberReader, depth: int = 0) -> str:
    """A listing of the archive, then every member's text (nested archives up to ``max_archive_depth``)."""
    try:
        archive = zipfile.ZipFile(io.BytesIO(data))
        infos = archive.infolist()
    except (zipfile.BadZipFile, zipfile.LargeZipFile, OSError) as exc:
        raise ReaderError(f"{name} is not a readable zip archive: {exc}", hint="the file may be damaged") from None

    files = [i for i in infos if not i.is_dir()]
    out = [f"# {name} (zip archive, {len(files)} files)"]
    for info in files[: limits.max_archive_members]:
        out.append(f"- {info.filename} ({info.file_size:,} bytes)")
    if len(files) > limits.max_archive_members:
        out.append(f"[... {len(files) - limits.max_archive_members} more members not listed]")

    budget = limits.max_archive_bytes
    for info in files[: limits.max_archive_members]:
        member = f"{name}/{info.filename}"
        out.append(f"\n=== {member} ===")
        if info.flag_bits & 0x1:
            out.append("[encrypted member: cannot be read]")
            continue
        if info.file_size > limits.max_file_bytes:
            out.append(f"[skipped: {info.file_size:,} bytes is over the {limits.max_file_bytes:,} byte limit]")
            continue
        if info.file_size > budget:
            out.append("[skipped: the archive's total size limit was reached]")
            continue
        try:
            with archive.open(info) as fh:
                # read one byte past the declared size: a lying header (zip bomb) is caught here
                blob = fh.read(info.file_size + 1)
        except (zipfile.BadZipFile, OSError, RuntimeError, NotImplementedError) as exc:
            out.append(f"[member could not be decompressed: {exc}]")
            continue
        if len(blob) > info.file_size:
            out.append("[skipped: member is larger than its header declares]")
            continue
        budget -= len(blob)
        try:
            out.append(read_member(blob, member, limits, depth + 1))
        except (ReaderError, MissingDependencyError) as exc:
            # one unreadable member must not hide the others
            out.append(f"[{exc.message}]")
    return "\n".join(out)
