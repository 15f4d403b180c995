"""Typed commands: one module per command, each with an ``<Name>Options`` dataclass, a
``<Name>Result`` and ``run(options) -> result``. All the policy of a command lives here (its
default folder, the resume rule, which configuration a run uses, which options go together,
where a fit runs); :mod:`headstudio.cli` only maps argv to options and results to printed lines.

::

    from headstudio.commands import generate
    result = generate.run(generate.GenerateOptions("a DSLR portrait of Kratos", steps=2000))

Messages name a command's options as ``«name»`` (the field of its Options); the CLI prints each
as the flag that sets it (:mod:`headstudio.errors`). Modules are imported on demand, so importing
one command does not load the others' dependencies.
"""

from __future__ import annotations

from ..train.run_folder import RunFolder, RunFolderBusy, RunState

__all__ = ["RunFolder", "RunFolderBusy", "RunState"]
