"""Head sampling of new traces: OpenTelemetry's parent-based ratio sampler, from its environment.

``OTEL_TRACES_SAMPLER`` and ``OTEL_TRACES_SAMPLER_ARG`` as OpenTelemetry defines them:
``parentbased_always_on`` (the default), ``parentbased_always_off`` and
``parentbased_traceidratio`` with a ratio in [0, 1]; ``always_on``, ``always_off`` and
``traceidratio`` are taken as their parent-based forms. Only a trace's first span
decides, by its trace id (the same rule as the SDK's ``TraceIdRatioBased``, so
processes agree); every span after it follows its parent's sampled flag, so an unsampled
call records no span anywhere in the mesh.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from natsmesh.config import Settings

log = logging.getLogger("natsmesh.tracing")

SAMPLER_ENV = "OTEL_TRACES_SAMPLER"
SAMPLER_ARG_ENV = "OTEL_TRACES_SAMPLER_ARG"
_ID_SPACE = 1 << 64
_RATIOS = {"always_on": 1.0, "always_off": 0.0}


class RatioSampler:
    """Samples a new trace when the low 64 bits of its id are below ``ratio`` of their range."""

    __slots__ = ("_bound", "ratio")

    def __init__(self, ratio: float = 1.0) -> None:
        if not 0.0 <= ratio <= 1.0:
            raise ValueError(f"a sampling ratio is between 0 and 1, not {ratio}")
        self.ratio = ratio
        self._bound = round(ratio * _ID_SPACE)

    def sample(self, trace_id: str) -> bool:
        """Whether a trace that starts here with this id (32 hex digits) is recorded."""
        bound = self._bound
        return bound >= _ID_SPACE or int(trace_id[16:], 16) < bound

    def __repr__(self) -> str:
        return f"RatioSampler({self.ratio})"


def from_settings(settings: Settings) -> RatioSampler:
    """The sampler the settings (``OTEL_TRACES_SAMPLER[_ARG]``) ask for."""
    env = {
        SAMPLER_ENV: settings.traces_sampler or "",
        SAMPLER_ARG_ENV: settings.traces_sampler_arg or "",
    }
    return from_environ(env)


def from_environ(env: Mapping[str, str]) -> RatioSampler:
    """The sampler ``OTEL_TRACES_SAMPLER[_ARG]`` ask for; bad values are logged and the
    default (sample everything) is used, as the OpenTelemetry SDK does."""
    name = env.get(SAMPLER_ENV, "").strip().lower().removeprefix("parentbased_")
    if not name:
        return RatioSampler()
    if name in _RATIOS:
        return RatioSampler(_RATIOS[name])
    if name != "traceidratio":
        log.warning(
            "%s=%r is not a sampler natsmesh knows; sampling every trace", SAMPLER_ENV, name
        )
        return RatioSampler()
    arg = env.get(SAMPLER_ARG_ENV, "").strip()
    try:
        return RatioSampler(float(arg) if arg else 1.0)
    except ValueError:
        log.warning(
            "%s=%r is not a ratio between 0 and 1; sampling every trace", SAMPLER_ARG_ENV, arg
        )
        return RatioSampler()
