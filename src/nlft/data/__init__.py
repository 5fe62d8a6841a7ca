"""Making training data: generation of outputs, judging of the incorrect ones, and :func:`prepare` (questions ->
outputs -> grades -> judgments -> NLFT records), the library form of ``nlft prepare``.

``from nlft.data import prepare`` (and ``generate``, ``judge``) are imported lazily from
:mod:`nlft.data.build`, so that importing a submodule stays light.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

__all__ = ["BackendSpec", "DataResult", "JudgeSpec", "SamplingSpec", "TemplateSpec", "generate", "judge", "prepare"]

if TYPE_CHECKING:
    from nlft.data.build import (
        BackendSpec,
        DataResult,
        JudgeSpec,
        SamplingSpec,
        TemplateSpec,
        generate,
        judge,
        prepare,
    )


def __getattr__(name: str) -> Any:
    if name in __all__:
        import nlft.data.build as build

        return getattr(build, name)
    raise AttributeError(f"module 'nlft.data' has no attribute {name!r}")
