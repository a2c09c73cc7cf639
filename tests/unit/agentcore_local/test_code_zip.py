"""The code-zip checks on real archives in temp dirs: what is unpacked, and what never is."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from agentcore_local.sandbox.code_zip import HOST_MACHINE, BadCodeZip, unpack
from tests.support.code_zips import zip_with_modes


def test_a_good_zip_unpacks_read_only_with_its_modes_and_inner_links(tmp_path: Path) -> None:
    data = zip_with_modes(
        {
            "main.py": (0o100644, b"print('hi')"),
            "bin/tool": (0o100755, b"#!/bin/sh\n"),
            "lib/alias.py": (0o120777, b"../main.py"),
        }
    )
    tree = unpack(data, "main.py", tmp_path / "code")
    assert (tree / "main.py").read_text() == "print('hi')"
    assert os.access(tree / "bin/tool", os.X_OK) and not os.access(tree / "main.py", os.X_OK)
    assert (tree / "lib/alias.py").read_text() == "print('hi')"
    assert not (tree.stat().st_mode & 0o222)  # nothing writable: the sandbox binds it read-only too


def test_a_chain_of_inner_links_that_leaves_the_tree_is_refused_and_leaves_nothing(tmp_path: Path) -> None:
    # Each target looks inside on its own ("b/.." is "."), but b is itself a link to ".", so a is "..".
    chain = zip_with_modes({"main.py": (0o100644, b""), "b": (0o120777, b"."), "a": (0o120777, b"b/..")})
    unpack(
        zip_with_modes({"main.py": (0o100644, b""), "here": (0o120777, b".")}), "main.py", tmp_path / "fine"
    )
    with pytest.raises(BadCodeZip, match="outside"):
        unpack(chain, "main.py", tmp_path / "code")
    assert not (tmp_path / "code").exists()
    assert [p.name for p in tmp_path.iterdir()] == ["fine"]  # no half-unpacked temp tree left


def test_a_zip_that_unpacks_past_the_limit_is_refused(tmp_path: Path, monkeypatch) -> None:
    monkeypatch.setattr("agentcore_local.sandbox.code_zip.MAX_UNPACKED_BYTES", 1000)
    with pytest.raises(BadCodeZip, match="unpacks to over 1000"):
        unpack(zip_with_modes({"main.py": (0o100644, b"x" * 2000)}), "main.py", tmp_path / "code")


def elf_header(machine: int) -> bytes:
    """The first bytes of a little-endian 64-bit ELF shared object for `machine` (e_machine)."""
    return b"\x7fELF\x02\x01\x01" + bytes(9) + b"\x03\x00" + machine.to_bytes(2, "little") + bytes(44)


def test_a_native_library_for_another_cpu_is_refused_in_one_line_naming_it(tmp_path: Path) -> None:
    other = 0xB7 if HOST_MACHINE == "x86_64" else 0x3E  # aarch64 here, x86_64 on an arm64 machine
    lib = "pydantic_core/_pydantic_core.cpython-312-linux-gnu.so"
    data = zip_with_modes({"main.py": (0o100644, b""), lib: (0o100755, elf_header(other))})
    with pytest.raises(BadCodeZip) as refused:
        unpack(data, "main.py", tmp_path / "code")
    assert lib in str(refused.value) and HOST_MACHINE in str(refused.value) and "\n" not in str(refused.value)
    assert not (tmp_path / "code").exists()


def test_a_native_library_for_this_cpu_unpacks(tmp_path: Path) -> None:
    own = {"x86_64": 0x3E, "aarch64": 0xB7}[HOST_MACHINE]
    data = zip_with_modes({"main.py": (0o100644, b""), "lib/_x.so": (0o100755, elf_header(own))})
    assert (unpack(data, "main.py", tmp_path / "code") / "lib/_x.so").is_file()
