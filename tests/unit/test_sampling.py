"""Head sampling from OTEL_TRACES_SAMPLER[_ARG]: the SDK's ratio rule, bad values refused."""

from __future__ import annotations

import logging
import random

import pytest
from opentelemetry.sdk.trace.sampling import TraceIdRatioBased

from natsmesh.tracing.sampling import RatioSampler, from_environ


def test_no_setting_samples_every_trace() -> None:
    sampler = from_environ({})
    assert sampler.ratio == 1.0
    assert sampler.sample("f" * 32) and sampler.sample("0" * 31 + "1")


@pytest.mark.parametrize("ratio", [0.0, 0.001, 0.25, 0.5, 0.999, 1.0])
def test_a_ratio_decides_as_the_opentelemetry_sdk_does(ratio: float) -> None:
    ours = from_environ(
        {"OTEL_TRACES_SAMPLER": "parentbased_traceidratio", "OTEL_TRACES_SAMPLER_ARG": str(ratio)}
    )
    sdk = TraceIdRatioBased(ratio)
    rng = random.Random(15)
    bound = round(ratio * 2**64)
    edges = [bound - 1, bound, bound + 1, 0, 2**64 - 1]
    lows = [e for e in edges if 0 <= e < 2**64] + [rng.getrandbits(64) for _ in range(2000)]
    for low in lows:
        trace_id = (rng.getrandbits(64) << 64) | low
        expected = sdk.should_sample(None, trace_id, "x").decision.is_sampled()
        assert ours.sample(f"{trace_id:032x}") is expected, (ratio, hex(low))


@pytest.mark.parametrize(
    ("name", "ratio"),
    [("always_off", 0.0), ("parentbased_always_off", 0.0), ("ALWAYS_ON", 1.0),
     ("traceidratio", 0.5)],
)  # fmt: skip
def test_every_sampler_name_is_its_parent_based_form(name: str, ratio: float) -> None:
    sampler = from_environ({"OTEL_TRACES_SAMPLER": name, "OTEL_TRACES_SAMPLER_ARG": "0.5"})
    assert sampler.ratio == ratio


@pytest.mark.parametrize(
    "env",
    [
        {"OTEL_TRACES_SAMPLER": "jaeger_remote"},
        {"OTEL_TRACES_SAMPLER": "traceidratio", "OTEL_TRACES_SAMPLER_ARG": "half"},
        {"OTEL_TRACES_SAMPLER": "traceidratio", "OTEL_TRACES_SAMPLER_ARG": "1.5"},
    ],
)
def test_a_bad_setting_says_so_in_one_line_and_samples_everything(
    env: dict[str, str], caplog: pytest.LogCaptureFixture
) -> None:
    with caplog.at_level(logging.WARNING, logger="natsmesh.tracing"):
        sampler = from_environ(env)
    assert sampler.ratio == 1.0
    [record] = caplog.records
    assert "\n" not in record.getMessage() and "OTEL_TRACES_SAMPLER" in record.getMessage()


def test_a_ratio_outside_0_to_1_is_refused() -> None:
    with pytest.raises(ValueError, match="between 0 and 1"):
        RatioSampler(-0.1)
