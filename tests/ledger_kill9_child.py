"""Child of ``test_ledger_kill9.py``: works the ledger flat out until it is SIGKILLed.

Usage: python ledger_kill9_child.py DB SYNCHRONOUS OWNER

Prints ``ready`` once the ledger is open and the predecessor's victims are requeued, then loops
forever: single ingests, concurrent ingests (group commit), ``ingest_many`` batches, and one
message at a time walked claim → submit → accept → complete (or failed, released, requeued,
heartbeat). Right after an ``ingest`` returns it prints ``I <id> <key>``; right after a
``complete`` returns, ``D <id>``. Those lines are the acks the parent holds the ledger to.
"""

from __future__ import annotations

import asyncio
import contextlib
import random
import sys

from agentbridge.ledger.sqlite import Ledger, LedgerError, NewMessage
from agentbridge.models import Message

CONVERSATIONS = [f"conv{i}" for i in range(6)]


def ack(line: str) -> None:
    # one write of one whole line: a kill cannot leave half an ack behind
    sys.stdout.write(line + "\n")
    sys.stdout.flush()


def text_for(key: str) -> str:
    return f"text of {key} ✓ \U0001f600"


async def main() -> None:
    path, mode, owner = sys.argv[1:4]
    rng = random.Random()
    led = await Ledger.open(path, synchronous=mode)
    for victim in await led.victims(agent="A"):  # what a killed predecessor left in flight
        with contextlib.suppress(LedgerError):
            await led.requeue_victim(victim.id, victim.fence, "predecessor was killed")
    ack("ready")
    n = 0
    current: Message | None = None

    def next_key() -> str:
        nonlocal n
        n += 1
        return f"{owner}-{n}"

    async def ingest_one(key: str) -> None:
        res = await led.ingest("kill9", rng.choice(CONVERSATIONS), "u", text_for(key), key, "A")
        ack(f"I {res.message.id} {key}")

    while True:
        r = rng.random()
        if r < 0.30:
            await ingest_one(next_key())
        elif r < 0.40:
            await asyncio.gather(*(ingest_one(next_key()) for _ in range(8)))
        elif r < 0.45:
            keys = [next_key() for _ in range(10)]
            results = await led.ingest_many(
                [
                    NewMessage("kill9", rng.choice(CONVERSATIONS), "u", text_for(k), k, "A")
                    for k in keys
                ]
            )
            for key, res in zip(keys, results, strict=True):
                ack(f"I {res.message.id} {key}")
        elif current is None:
            current = await led.claim_next("A", owner, 30.0)
        else:
            step = rng.random()
            if current.state == "claimed" and step < 0.1:
                await led.release(current.id, current.fence, "box not empty")
                current = None
            elif step < 0.15:
                await led.requeue_victim(current.id, current.fence, "simulated crash")
                current = None
            elif step < 0.2:
                await led.fail(current.id, current.fence, "simulated failure")
                current = None
            elif step < 0.3:
                current = await led.heartbeat(current.id, current.fence, 30.0)
            elif current.state == "claimed":
                current = await led.mark_submitted(current.id, current.fence, actor=owner)
            elif current.state == "submitted":
                current = await led.mark_accepted(current.id, current.fence, actor=owner)
            else:
                await led.complete(current.id, current.fence, f"reply to {current.id}")
                ack(f"D {current.id}")
                current = None


if __name__ == "__main__":
    asyncio.run(main())
