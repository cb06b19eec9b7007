"""Reading samples ahead of their use."""

from __future__ import annotations

import pytest

# -- schema: the typed records' JSON -----------------------------------------------------------


def test_read_ahead_keeps_the_order_and_raises_where_the_reading_failed():

    from edgeq.data.read_ahead import read_ahead

    assert list(read_ahead(iter(range(50)), item_bytes=1 << 30)) == list(range(50))  # a queue of 2: still all, in order

    def failing():
        yield 1
        yield 2
        raise ValueError("unreadable image 3")

    got = []
    with pytest.raises(ValueError, match="unreadable image 3"):
        for item in read_ahead(failing(), 8):
            got.append(item)
    assert got == [1, 2]
