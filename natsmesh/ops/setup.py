"""One-time set-up of a mesh's JetStream assets: the registry bucket and the span stream."""

from __future__ import annotations

from natsmesh.config import Settings
from natsmesh.connection import connect_nats
from natsmesh.errors import Unavailable
from natsmesh.registry import harden_bucket, open_bucket


async def setup(settings: Settings) -> list[str]:
    """Create (or bring up to date) the registry bucket and the span stream; one line per
    asset saying what was done. Run it as a user allowed to manage streams (the ``admin``
    of the generated config): agents, the CLI and the gateway are not, by design.

    Raises :class:`~natsmesh.errors.Unavailable` when NATS cannot be reached or refuses.
    """
    from natsmesh.tracing.export import ensure_stream

    nc = await connect_nats(settings, "natsmesh setup", reconnect=False)
    done = []
    try:
        js = nc.jetstream()
        try:
            await open_bucket(js, settings)
            changed = await harden_bucket(js, settings)
        except Exception as exc:
            raise Unavailable(
                f"cannot set up the registry bucket {settings.registry_bucket} ({exc}): "
                "run `natsmesh setup` as a user allowed to manage streams (admin)"
            ) from exc
        done.append(
            f"registry bucket {settings.registry_bucket}: "
            + ("updated (rollups refused, values bounded)" if changed else "ready")
        )
        await ensure_stream(js, settings)
        try:
            await js.stream_info(settings.spans_stream)
        except Exception as exc:
            raise Unavailable(
                f"cannot create the span stream {settings.spans_stream} ({exc}): "
                "run `natsmesh setup` as a user allowed to manage streams (admin)"
            ) from exc
        done.append(f"span stream {settings.spans_stream}: ready")
    finally:
        await nc.close()
    return done
