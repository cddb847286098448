"""Type stub of the native scan (``_chunker.c``); the contract is in its docstring."""

def find_cuts(
    data: bytes | bytearray | memoryview,
    gear_table: bytes,
    sizes: tuple[int, int, int],
    masks: tuple[int, int],
    *,
    carry: int = 0,
    history: bytes | memoryview = b"",
    final: bool = False,
) -> list[int]: ...
