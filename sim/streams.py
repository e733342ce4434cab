"""Stream drivers for Amaranth's simulator (the fast rung of the verification ladder).

``put``/``get`` follow the valid/ready rule of :mod:`amaranth.lib.stream`: a transfer
happens on a clock edge where both are high. Optional random gaps (valid low) and
backpressure (ready low) exercise every handshake corner.
"""

from __future__ import annotations

import random

__all__ = ["put_all", "get_n"]


async def put_all(ctx, stream, payloads, *, gap_prob: float = 0.0, rng: random.Random | None = None):
    """Drive every payload into ``stream``, idling a cycle with probability ``gap_prob``."""
    rng = rng or random.Random(0)
    for payload in payloads:
        while gap_prob and rng.random() < gap_prob:
            ctx.set(stream.valid, 0)
            await ctx.tick()
        ctx.set(stream.valid, 1)
        ctx.set(stream.payload, payload)
        await ctx.tick().until(stream.ready)
    ctx.set(stream.valid, 0)


async def get_n(ctx, stream, n: int, *, stall_prob: float = 0.0, rng: random.Random | None = None):
    """Collect ``n`` payloads from ``stream``, holding ready low with probability ``stall_prob``."""
    rng = rng or random.Random(1)
    out = []
    while len(out) < n:
        ready = not (stall_prob and rng.random() < stall_prob)
        ctx.set(stream.ready, ready)
        *_, valid, payload = await ctx.tick().sample(stream.valid, stream.payload)
        if ready and valid:
            out.append(payload)
    ctx.set(stream.ready, 0)
    return out
