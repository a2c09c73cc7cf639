"""Direct-code-deployment zips built at test time, as AWS's guide builds them: the agent's files
and its dependencies at the zip's root. The dependencies are the distributions installed in this
venv (what `pip install --target` would put there, for this Python and platform), so no test
needs the network; `requirement` names the top distribution, its requirements follow."""

from __future__ import annotations

import importlib.metadata as metadata
import io
import zipfile

from packaging.requirements import Requirement


def distributions(requirement: str) -> list[metadata.Distribution]:
    """`requirement` and everything it requires (no extras), as installed here."""
    found: dict[str, metadata.Distribution] = {}
    pending = [requirement]
    while pending:
        name = pending.pop()
        key = name.lower().replace("_", "-")
        if key in found:
            continue
        try:
            dist = found[key] = metadata.distribution(name)
        except metadata.PackageNotFoundError:
            continue
        for line in dist.requires or []:
            req = Requirement(line)
            if req.marker is None or req.marker.evaluate({"extra": ""}):
                pending.append(req.name)
    return list(found.values())


def code_zip(files: dict[str, str], requirements: tuple[str, ...] = ()) -> bytes:
    """A zip of `files` (name -> text) with the installed `requirements` beside them."""
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w", zipfile.ZIP_DEFLATED, compresslevel=1) as archive:
        for name, text in files.items():
            archive.writestr(name, text)
        seen: set[str] = set()
        for requirement in requirements:
            for dist in distributions(requirement):
                for file in dist.files or []:
                    name = str(file)
                    if name.startswith("..") or "__pycache__" in name or name in seen:
                        continue  # scripts in bin/, compiled caches
                    seen.add(name)
                    archive.write(dist.locate_file(file), name)
    return buffer.getvalue()


def zip_with_modes(members: dict[str, tuple[int, bytes]]) -> bytes:
    """A zip whose members carry the given Unix modes (symlinks, device files: hostile archives)."""
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w") as archive:
        for name, (mode, data) in members.items():
            info = zipfile.ZipInfo(name)
            info.external_attr = mode << 16
            archive.writestr(info, data)
    return buffer.getvalue()
