from collections.abc import AsyncIterator

import pytest

from core.bus import EventBus
from core.schema import CORE_MIGRATIONS
from core.store import Store


@pytest.fixture
async def store(tmp_path) -> AsyncIterator[Store]:
    s = Store(tmp_path / "state.db")
    await s.open()
    await s.migrate("core", CORE_MIGRATIONS)
    yield s
    await s.close()


@pytest.fixture
async def bus(store) -> AsyncIterator[EventBus]:
    b = EventBus(store)
    await b.start()
    yield b
    b.close()
