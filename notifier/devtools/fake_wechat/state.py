"""Everything one fake server instance shares between its routes, bundled for injection."""

import time
from collections.abc import Callable
from dataclasses import dataclass

from .config import FakeConfig
from .faults import FaultQueue
from .ledger import Ledger
from .receipts import ReceiptPusher
from .tokens import TokenRegistry


@dataclass(frozen=True)
class FakeState:
    """Config, stores, the receipt pusher, and the clock and sleep functions tests may replace."""

    config: FakeConfig
    ledger: Ledger
    tokens: TokenRegistry
    faults: FaultQueue
    receipts: ReceiptPusher
    clock: Callable[[], float]
    sleep: Callable[[float], None]

    @classmethod
    def build(
        cls,
        config: FakeConfig,
        clock: Callable[[], float] = time.time,
        sleep: Callable[[float], None] = time.sleep,
    ) -> "FakeState":
        """Create fresh, empty stores for a config."""
        return cls(
            config=config,
            ledger=Ledger(config.dedupe_window, clock),
            tokens=TokenRegistry(config.token_ttl, clock),
            faults=FaultQueue(clock),
            receipts=ReceiptPusher(config),
            clock=clock,
            sleep=sleep,
        )

    def reset(self) -> None:
        """Forget deliveries, counters, faults and tokens."""
        self.ledger.reset()
        self.receipts.reset()
        self.faults.clear()
        self.tokens.reset()
